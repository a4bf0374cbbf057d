import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { builtinComponents } from '../components/index.ts'
import { credentialSchema } from '../shared/oauth/index.ts'
import { errorSpecs } from '../shared/errors.ts'
import { componentReference, editorSchema, ERRORS_BEGIN, ERRORS_END, errorReference, spliceReference } from '../shared/config/docs.ts'
import { testEditorSchema } from './harness/test-file.ts'
import { spliceTestReference, testFileReference } from './harness/test-file-docs.ts'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
export const SCHEMA_FILE = `${ROOT}schema/channel.schema.json`
export const README_FILE = `${ROOT}README.md`
export const TEST_SCHEMA_FILE = `${ROOT}schema/channel-test.schema.json`

/** What `npm run docs` would write: the editor schemas (channel, test file) and the README with fresh references and error table. */
export async function generateDocs(): Promise<{ schema: string; testSchema: string; readme: string }> {
  const schema = JSON.stringify(editorSchema(builtinComponents, credentialSchema), null, 2) + '\n'
  const testSchema = JSON.stringify(testEditorSchema(), null, 2) + '\n'
  const components = spliceReference(await readFile(README_FILE, 'utf8'), componentReference(builtinComponents, credentialSchema))
  const readme = spliceReference(components, errorReference(errorSpecs), ERRORS_BEGIN, ERRORS_END)
  return { schema, testSchema, readme: spliceTestReference(readme, testFileReference()) }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { schema, testSchema, readme } = await generateDocs()
  await writeFile(SCHEMA_FILE, schema)
  await writeFile(TEST_SCHEMA_FILE, testSchema)
  await writeFile(README_FILE, readme)
  console.log(`wrote ${SCHEMA_FILE.slice(ROOT.length)}, ${TEST_SCHEMA_FILE.slice(ROOT.length)} and the references and error table in README.md`)
}
