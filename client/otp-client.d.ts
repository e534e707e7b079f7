// Types for otp-client.js: the calls, the session state and the typed errors.
//
// Errors are generic over their code string: `OtpError<"OTP:INCORRECT">`. Every code the
// server documents in openapi.json is listed in `KnownErrorCode`; a newer server may send
// codes this file does not know, which still type-check as `ErrorCode` (any string).

/** What the server says about the current code. Times are on this machine's clock. */
export interface OtpState {
  /** When the current code expires. */
  expires: Date;
  /** Until when a resend is refused (the cooldown, or the expiry when none is left); null when allowed now. */
  resendBlock: Date | null;
  /** Until when verification is refused by a temporary block; null when none runs. */
  otpBlock: Date | null;
  /** The credential is blocked in this session (too many wrong codes). */
  blocked: boolean;
}

/**
 * The final action's answer after a correct code. The final action chooses its status
 * (200–599): check `status`. (An answer from something in between, such as a proxy's 502
 * without an API error body, arrives here too.)
 */
export interface Verified<Body = unknown> {
  status: number;
  /** Parsed JSON when the answer is JSON, else its text. */
  body: Body;
  headers: Headers;
}

export interface OtpOptions {
  /** Where the API lives, e.g. "https://api.example.com"; default "" (this page's origin). */
  baseUrl?: string;
  /** A fetch to use instead of globalThis.fetch (tests, Node with a cookie jar). */
  fetch?: typeof globalThis.fetch;
  /** Cancels the call (the promise rejects with the AbortError). */
  signal?: AbortSignal;
}

export type KnownErrorCode =
  | "BODY:TOO_LARGE"
  | "CREDENTIAL:INVALID"
  | "CREDENTIAL:NOT_ALLOWED"
  | "GENERIC"
  | "OTP:CONFLICT"
  | "OTP:EXPIRED"
  | "OTP:INCORRECT"
  | "OTP:INVALID_COOKIE"
  | "OTP:INVALID_FORMAT"
  | "OTP:RESENT_NOT_ALLOWED"
  | "OTP:TOO_MANY_ATTEMPTS"
  | "OTP:TOO_MANY_CREDENTIALS"
  | "OTP:VERIFICATION_NOT_ALLOWED"
  | "RATE:LIMITED"
  | "REQUEST:CROSS_SITE"
  | "SERVER"
  | "SEND:UNAVAILABLE"
  | "PLUGIN:FAILED"
  | "PLUGIN:UNAVAILABLE"
  | "STORE:UNAVAILABLE"
  | typeof NETWORK
  | typeof UNEXPECTED_RESPONSE;

/** Any error code: the known ones, or a string a newer server sends. */
export type ErrorCode = KnownErrorCode | (string & {});

/** No answer arrived (offline, server down, or the browser refused the call, e.g. CORS). */
export declare const NETWORK: "CLIENT:NETWORK";
/** An answer that is not the API's: not 2xx and no `{error, message}` body, or a create/resend 2xx without a session state. */
export declare const UNEXPECTED_RESPONSE: "CLIENT:UNEXPECTED_RESPONSE";

export declare class OtpError<C extends string = ErrorCode> extends Error {
  constructor(code: C, message: string, details?: OtpErrorDetails);
  readonly code: C;
  /** HTTP status; 0 when no answer arrived. */
  readonly status: number;
  /** The session state the error body carried, if any. */
  readonly state: OtpState | null;
  /** Seconds to wait before trying again (Retry-After header or the body's retryAfter). */
  readonly retryAfter: number | null;
  /** The parsed error body, or the text of an unexpected answer. */
  readonly body: unknown;
}

export interface OtpErrorDetails {
  status?: number;
  state?: OtpState | null;
  retryAfter?: number | null;
  body?: unknown;
  cause?: unknown;
}

export declare class CredentialInvalidError extends OtpError<"CREDENTIAL:INVALID"> {}
export declare class CredentialNotAllowedError extends OtpError<"CREDENTIAL:NOT_ALLOWED"> {}
export declare class IncorrectCodeError extends OtpError<"OTP:INCORRECT"> {
  readonly state: OtpState;
}
export declare class TooManyAttemptsError extends OtpError<"OTP:TOO_MANY_ATTEMPTS"> {
  readonly state: OtpState;
}
export declare class VerificationNotAllowedError extends OtpError<"OTP:VERIFICATION_NOT_ALLOWED"> {
  readonly state: OtpState;
}
export declare class ResendNotAllowedError extends OtpError<"OTP:RESENT_NOT_ALLOWED"> {
  readonly state: OtpState;
}
export declare class ExpiredError extends OtpError<"OTP:EXPIRED"> {}
export declare class InvalidCookieError extends OtpError<"OTP:INVALID_COOKIE"> {}
export declare class InvalidFormatError extends OtpError<"OTP:INVALID_FORMAT"> {}
export declare class TooManyCredentialsError extends OtpError<"OTP:TOO_MANY_CREDENTIALS"> {}
export declare class RateLimitedError extends OtpError<"RATE:LIMITED"> {}
export declare class UnavailableError extends OtpError<
  "SEND:UNAVAILABLE" | "STORE:UNAVAILABLE" | "PLUGIN:UNAVAILABLE"
> {}
export declare class NetworkError extends OtpError<typeof NETWORK> {}

/** The error for an API error code: its subclass when the code is known, else a plain OtpError. */
export declare function errorFor<C extends string>(
  code: C,
  message: string,
  details?: OtpErrorDetails,
): OtpError<C>;

/** Starts (or switches to) a code for a credential (any JSON value the validation plugin accepts). */
export declare function createOtp(credential: unknown, options?: OtpOptions): Promise<OtpState>;

/** Sends a new code for the current credential, once `resendBlock` has passed. */
export declare function resend(options?: OtpOptions): Promise<OtpState>;

/**
 * Submits a code; resolves with the final action's answer, whatever its status. Rejects only
 * with the server's own refusals (one of its error codes) or a network failure.
 */
export declare function verify<Body = unknown>(code: string, options?: OtpOptions): Promise<Verified<Body>>;
