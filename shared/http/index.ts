export type { HttpClient, HttpRequest, HttpResponse } from './types.ts'
export { createHttpClient, isRetryableStatus, statusError, type HttpClientOptions } from './client.ts'
