import { readdirSync, readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseEr7, readHeader, serializeEr7 } from '../../shared/hl7v2/index.ts'

const DIR = new URL('../fixtures/hl7v2/', import.meta.url)
const files = readdirSync(DIR).filter((f) => f.endsWith('.hl7')).sort()
/** `<type>-<trigger>[-<what>]-<version>.hl7`, e.g. `oru-r01-cbc-2.5.1.hl7`. */
const NAME = /^([a-z]{3})-([a-z]\d\d)-(?:.+-)?(\d\.\d(?:\.\d)?)\.hl7$/

describe('corpus of realistic messages', () => {
  it('covers the message types, versions and encodings the parser must handle', () => {
    expect(files.length).toBeGreaterThanOrEqual(25)
    const kinds = new Set(files.map((f) => f.split('-').slice(0, 2).join('-')))
    for (const k of ['adt-a01', 'adt-a03', 'adt-a04', 'adt-a08', 'adt-a40', 'oru-r01', 'orm-o01', 'oml-o21', 'siu-s12', 'mdm-t02', 'dft-p03', 'vxu-v04']) expect(kinds, k).toContain(k)
    const versions = new Set(files.map((f) => NAME.exec(f)?.[3]))
    for (const v of ['2.3', '2.3.1', '2.4', '2.5', '2.5.1', '2.6', '2.7', '2.8']) expect(versions, v).toContain(v)
  })

  it.each(files)('%s: parses without loss and serializes back byte for byte (\\r terminators)', (file) => {
    const text = readFileSync(new URL(file, DIR), 'utf8')
    const normalized = text.replace(/\r\n|\n/g, '\r')
    const message = parseEr7(text)
    expect(message.segments).toEqual(normalized.split('\r').slice(0, -1).map((line) => line.slice(0, 3)))
    expect(serializeEr7(message)).toBe(normalized)
    expect(serializeEr7(JSON.parse(JSON.stringify(message)))).toBe(normalized)
    if (!text.includes('\n')) expect(serializeEr7(message)).toBe(text)
    const [, type, trigger, version] = NAME.exec(file) ?? []
    const header = readHeader(text)
    expect([header.messageType, header.trigger, header.version]).toEqual([type!.toUpperCase(), trigger!.toUpperCase(), version])
  })

  it('decodes the escapes the corpus uses', () => {
    const read = (file: string): any => parseEr7(readFileSync(new URL(file, DIR), 'utf8'))
    expect(read('oru-r01-micro-2.7.hl7').NTE[0][3][0][1]).toBe('Isolate reported to infection prevention.\r\nContact precautions advised per policy IC-14.')
    expect(read('oru-r01-radiology-2.4.hl7').OBX[0][5][0][1]).toBe('\\H\\IMPRESSION:\\N\\\\.br\\1. Mild cardiomegaly, stable since 03/2016.\\.br\\2. No focal consolidation & no effusion.')
    expect(read('oru-r01-radiology-2.4.hl7').OBX[2][5][0][1]).toBe('Dictated by: MENSAH^KOFI ~ signed')
    expect(read('adt-a01-escape-bang-2.4.hl7').NTE[0][3][0][1]).toBe('Admitted from ED! see ED note!.br!Family (wife & son) at bedside')
    expect(read('mdm-t02-base64-2.5.hl7').OBX[0][5][0]).toMatchObject({ 2: 'APPLICATION', 3: 'PDF', 4: 'Base64' })
    expect(Buffer.from(read('mdm-t02-base64-2.5.hl7').OBX[0][5][0][5], 'base64').toString('latin1')).toMatch(/^%PDF-1\.4\n/)
    expect(read('oru-r01-repeats-2.6.hl7').OBX[1][5]).toBeNull()
  })
})
