import { secretSchema } from '../config/secret-schema.ts'

/** The `tls` option of a listening source (HTTP, MLLP): the server's certificate and key, optionally mutual TLS. */
export function serverTlsSchema(description: string) {
  return {
    type: 'object', additionalProperties: false, required: ['certFile', 'key'],
    description,
    properties: {
      certFile: { type: 'string', minLength: 1, description: 'PEM certificate (chain) file, relative to the channel file.', examples: ['tls/server.crt'] },
      key: secretSchema('PEM private key of the certificate.', { examples: [{ $file: 'tls/server.key' }] }),
      caFile: { type: 'string', minLength: 1, description: 'PEM file of CAs that client certificates must chain to (mutual TLS). The subject (CN) of a certificate verified against it is recorded as the message attribute `clientCertSubject`.' },
      requireClientCert: { type: 'boolean', default: false, description: 'Refuse clients without a certificate from `caFile`. Otherwise they are let in unidentified (a certificate that does not chain to `caFile` is not recorded).' },
    },
  } as const
}
