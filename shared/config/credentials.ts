import type { JsonSchema } from '../component.ts'
import { credentialSchema, checkCredential } from '../oauth/index.ts'

export interface CredentialSupport {
  credentialSchema: JsonSchema
  /** Provider rules a schema cannot express: `[pointer inside the credential, message]` pairs. */
  checkCredential(config: Record<string, unknown>): Array<[string, string]>
}

/** The OAuth module's credential schema and provider-rule checks, behind one seam for the loader and the docs. */
export async function credentialSupport(): Promise<CredentialSupport> {
  return { credentialSchema, checkCredential: checkCredential as CredentialSupport['checkCredential'] }
}
