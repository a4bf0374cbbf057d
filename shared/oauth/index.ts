/**
 * The shared OAuth 2.0 client: one TokenProvider per credential. Usable without any channel.
 * @see README.md "The OAuth client as a library"
 */
export type { AccessToken, CredentialStatus, TokenCounters, TokenProvider } from './types.ts'
export {
  credentialSchema, applyPreset, checkCredential, scopeList, type KeyEntry,
  type CredentialConfig, type ClientAuthConfig, type AssertionConfig, type GrantName, type ClientAuthMethod, type SigningAlg, type SecretLike,
} from './config.ts'
export { PRESETS, presetOf, parseGoogleKeyFile, GOOGLE_TOKEN_URL, type Preset, type PresetName } from './presets.ts'
export { createTokenProvider, type TokenProviderOptions } from './provider.ts'
export { explainTokenRequest, resolveCredential, grantParams, signingKeysOf, checkCredentialKeys } from './credential.ts'
export { refreshSchedule, TokenCache, defaultTokenCache } from './token-slot.ts'
export { createRefreshTokenStore, importRefreshToken, type RefreshTokenStore, type StoredTokens, type StoredFailure, type FileStoreOptions } from './refresh-store.ts'
export { OAuthResponseError, OAuthChallengeError, FailFastError, ReauthRequiredError, parseWwwAuthenticate, redactedExcerpt, TERMINAL_OAUTH_ERRORS } from './errors.ts'
export { processTokenResponse, planTokenRequest, formEncode, JWT_BEARER_GRANT, CLIENT_ASSERTION_TYPE, type RawTokenResponse, type ResolvedCredential } from './token-endpoint.ts'
export { discover, discoveryUrls, type ServerMetadata, type DiscoveryOptions, type MetadataGet } from './discovery.ts'
export { DpopSigner } from './dpop.ts'
export { authorizeWithConsent, authorizationRequestUrl, createPkce, listenForCallback, DEFAULT_REDIRECT_URI, type ConsentOptions, type Pkce } from './authorize.ts'
export { loadSigningKey, loadSigningKeys, signingKeyAt, parsePrivateKey, publicJwk, publicJwkSet, certificateThumbprint, signJwt, type SigningKey } from './keys.ts'
