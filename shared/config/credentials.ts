import type { JsonSchema } from '../component.ts'

export interface CredentialSupport {
  credentialSchema: JsonSchema
  /** Provider rules a schema cannot express: `[pointer inside the credential, message]` pairs. */
  checkCredential(config: Record<string, unknown>): Array<[string, string]>
}

/** The OAuth module's credential schema and checks (kept behind one seam so config does not import the whole client eagerly). */
export async function credentialSupport(): Promise<CredentialSupport> {
  // Transitional: until shared/oauth lands, credentials are accepted as any object (issue 3 replaces this).
  const path = '../oauth/index.ts'
  const oauth = (await import(path).catch(() => ({ credentialSchema: { type: 'object', description: 'An OAuth 2.0 credential (schema arrives with the OAuth client).' }, checkCredential: () => [] }))) as CredentialSupport
  return { credentialSchema: oauth.credentialSchema, checkCredential: oauth.checkCredential }
}
