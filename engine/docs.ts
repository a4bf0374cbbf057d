import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { builtinComponents } from '../components/index.ts'
import { credentialSchema } from '../shared/oauth/index.ts'
import { componentReference, editorSchema, spliceReference } from '../shared/config/docs.ts'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const SCHEMA_FILE = `${ROOT}schema/channel.schema.json`
export const README_FILE = `${ROOT}README.md`

/** What `npm run docs` would write: the editor schema and the README with a fresh reference. */
export async function generateDocs(): Promise<{ schema: string; readme: string }> {
  const schema = JSON.stringify(editorSchema(builtinComponents, credentialSchema), null, 2) + '\n'
  const readme = spliceReference(await readFile(README_FILE, 'utf8'), componentReference(builtinComponents, credentialSchema))
  return { schema, readme }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { schema, readme } = await generateDocs()
  await writeFile(SCHEMA_FILE, schema)
  await writeFile(README_FILE, readme)
  console.log(`wrote ${SCHEMA_FILE.slice(ROOT.length)} and the component reference in README.md`)
}
