// otp-client.js — a small, dependency-free ES module for calling otp-server from a web page
// (or from Node 18+). It speaks the three routes of the API:
//
//   createOtp(credential)  POST /api/otp/create  (JSON body)  → the session state
//   resend()               POST /api/otp/resend                → the session state
//   verify(code)           POST /api/otp/verify  (form body)  → the final action's answer
//
// The session itself lives in an HttpOnly cookie that this script never sees: every call
// sends `credentials: "include"` so the browser stores and returns it, also when the API is
// on another origin allowed by the server's CORS_ORIGIN (see the README, "Use from a web
// page", for which deployments can work at all).
//
// Every refused call throws an OtpError whose `code` is the API's error code
// ("OTP:INCORRECT", "RATE:LIMITED", …); known codes get their own subclass, so
// `err instanceof IncorrectCodeError` reads well, and codes this version does not know
// still arrive as a plain OtpError with the code string. Times in the session state are
// Date objects on this machine's clock: when the browser may read the answer's Date header
// and the local clock runs ahead of it, or two seconds or more behind, they are shifted by
// that difference, so `state.resendBlock - Date.now()` is a countdown that is never early.

/** Codes this module produces itself (never sent by the server). */
export const NETWORK = "CLIENT:NETWORK";
export const UNEXPECTED_RESPONSE = "CLIENT:UNEXPECTED_RESPONSE";

/** A refused or failed call. `code` is the API's error code, or one of the CLIENT: codes. */
export class OtpError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    /** HTTP status; 0 when no answer arrived. */
    this.status = details.status ?? 0;
    /** The session state the error body carried (expires, resendBlock, otpBlock, blocked), or null. */
    this.state = details.state ?? null;
    /** Seconds to wait before trying again (Retry-After or the body's retryAfter), or null. */
    this.retryAfter = details.retryAfter ?? null;
    /** The parsed error body (or the text of an unexpected one). */
    this.body = details.body ?? null;
    if (details.cause !== undefined) this.cause = details.cause;
  }
}

/** CREDENTIAL:INVALID — the validation plugin refused the credential, or it cannot be delivered to. */
export class CredentialInvalidError extends OtpError {}
/** CREDENTIAL:NOT_ALLOWED — the credential is not allowed to receive codes. */
export class CredentialNotAllowedError extends OtpError {}
/** OTP:INCORRECT — wrong code; attempts remain. `state.otpBlock` is set when a temporary block began. */
export class IncorrectCodeError extends OtpError {}
/** OTP:TOO_MANY_ATTEMPTS — wrong code and no attempts left: the credential is blocked in this session. */
export class TooManyAttemptsError extends OtpError {}
/** OTP:VERIFICATION_NOT_ALLOWED — a block is running: `state.otpBlock` (temporary) or `state.blocked`. */
export class VerificationNotAllowedError extends OtpError {}
/** OTP:RESENT_NOT_ALLOWED — cooldown running (`state.resendBlock`), resends used up, or blocked. */
export class ResendNotAllowedError extends OtpError {}
/** OTP:EXPIRED — the code expired; create a new one. */
export class ExpiredError extends OtpError {}
/** OTP:INVALID_COOKIE — no usable session cookie (missing, expired, already used, or not stored by the browser). */
export class InvalidCookieError extends OtpError {}
/** OTP:INVALID_FORMAT — the code has the wrong length or characters. */
export class InvalidFormatError extends OtpError {}
/** OTP:TOO_MANY_CREDENTIALS — the session holds the most credentials it may. */
export class TooManyCredentialsError extends OtpError {}
/** RATE:LIMITED — too many requests; `retryAfter` says how many seconds to wait. */
export class RateLimitedError extends OtpError {}
/** SEND:UNAVAILABLE, STORE:UNAVAILABLE, PLUGIN:UNAVAILABLE — a transient failure; try again (nothing changed, unless a code may already have gone out: then the server moved the session on and set its cookie). */
export class UnavailableError extends OtpError {}
/** CLIENT:NETWORK — no answer: offline, the server is down, or the browser blocked the call (CORS). */
export class NetworkError extends OtpError {}

const CLASSES = {
  "CREDENTIAL:INVALID": CredentialInvalidError,
  "CREDENTIAL:NOT_ALLOWED": CredentialNotAllowedError,
  "OTP:INCORRECT": IncorrectCodeError,
  "OTP:TOO_MANY_ATTEMPTS": TooManyAttemptsError,
  "OTP:VERIFICATION_NOT_ALLOWED": VerificationNotAllowedError,
  "OTP:RESENT_NOT_ALLOWED": ResendNotAllowedError,
  "OTP:EXPIRED": ExpiredError,
  "OTP:INVALID_COOKIE": InvalidCookieError,
  "OTP:INVALID_FORMAT": InvalidFormatError,
  "OTP:TOO_MANY_CREDENTIALS": TooManyCredentialsError,
  "RATE:LIMITED": RateLimitedError,
  "SEND:UNAVAILABLE": UnavailableError,
  "STORE:UNAVAILABLE": UnavailableError,
  "PLUGIN:UNAVAILABLE": UnavailableError,
};

/**
 * Every error code the server itself answers with (openapi.json's ErrorCode). On verify, a
 * refusal with one of these is the server's; any other answer after a right code is the
 * final action's, whatever its status.
 */
const SERVER_CODES = new Set([
  ...Object.keys(CLASSES),
  "BODY:TOO_LARGE",
  "GENERIC",
  "OTP:CONFLICT",
  "PLUGIN:FAILED",
  "REQUEST:CROSS_SITE",
  "SERVER",
]);

/** The error for an API error code: its subclass when the code is known, else a plain OtpError. */
export function errorFor(code, message, details) {
  const Class = Object.hasOwn(CLASSES, code) ? CLASSES[code] : OtpError;
  return new Class(code, message, details);
}

/**
 * Starts (or switches to) a code for a credential — any JSON value the server's validation
 * plugin accepts, e.g. `{ email: "me@example.com" }`.
 */
export async function createOtp(credential, options = {}) {
  const answer = await call("/api/otp/create", options, {
    headers: { "content-type": "application/json" },
    body: JSON.stringify(credential),
  });
  return sessionState(answer, "/api/otp/create");
}

/** Sends a new code for the current credential (after the cooldown in `resendBlock`). */
export async function resend(options = {}) {
  const answer = await call("/api/otp/resend", options, {});
  return sessionState(answer, "/api/otp/resend");
}

/** The session state of a successful create or resend; a success without one (some other
 * server or a proxy answering 2xx) is unexpected, so callers never get a state without
 * its expiry. */
function sessionState(answer, path) {
  const expires = answer.body?.expires;
  if (typeof expires !== "string" || Number.isNaN(Date.parse(expires))) {
    throw new OtpError(UNEXPECTED_RESPONSE, `unexpected answer ${answer.status} from ${path}`, {
      status: answer.status,
      body: answer.body,
      retryAfter: null,
    });
  }
  return stateOf(answer.body, answer.offsetMs);
}

/**
 * Submits a code. Resolves with the final action's answer: `{ status, body, headers }`,
 * `body` parsed when it is JSON. The final action chooses the status (200–599), so check
 * `status`: only refusals carrying one of the server's own error codes reject.
 */
export async function verify(code, options = {}) {
  const answer = await call(
    "/api/otp/verify",
    options,
    {
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ otp: code }).toString(),
    },
    { finalAction: true },
  );
  return { status: answer.status, body: answer.body, headers: answer.headers };
}

async function call(path, options, init, { finalAction = false } = {}) {
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const url = (options.baseUrl ?? "").replace(/\/+$/, "") + path;
  let response;
  try {
    response = await fetchImpl(url, {
      method: "POST",
      credentials: "include",
      mode: "cors",
      cache: "no-store",
      signal: options.signal,
      ...init,
    });
  } catch (cause) {
    if (cause?.name === "AbortError") throw cause;
    throw new NetworkError(NETWORK, "the server could not be reached (offline, or the browser refused the call)", { cause });
  }
  const offsetMs = clockOffset(response);
  let text;
  try {
    text = await response.text();
  } catch (cause) {
    if (cause?.name === "AbortError") throw cause;
    throw new NetworkError(NETWORK, "the answer was cut off before it was complete", {
      cause,
      status: response.status,
    });
  }
  const json = response.headers.get("content-type")?.includes("json") ? parseJson(text) : undefined;
  const apiError = json && typeof json.error === "string" && (!finalAction || SERVER_CODES.has(json.error));
  if (response.ok || (finalAction && !apiError)) {
    return { status: response.status, body: json ?? text, headers: response.headers, offsetMs };
  }
  if (apiError) {
    const details = {
      status: response.status,
      body: json,
      state: typeof json.expires === "string" ? stateOf(json, offsetMs) : null,
      retryAfter: retryAfter(response, json),
    };
    throw errorFor(json.error, typeof json.message === "string" ? json.message : json.error, details);
  }
  throw new OtpError(UNEXPECTED_RESPONSE, `unexpected answer ${response.status} from ${path}`, {
    status: response.status,
    body: json ?? text,
    retryAfter: retryAfter(response, {}),
  });
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Server clock minus local clock, from a readable Date header. The header is truncated to
 * the second and read after the answer's trip, so the measure errs low: a local clock
 * ahead (negative) is always corrected, which keeps countdowns from ending early; one
 * behind is corrected from 2 s on (below that, a countdown only ends a little late).
 */
function clockOffset(response) {
  const date = Date.parse(response.headers.get("date") ?? "");
  if (Number.isNaN(date)) return 0;
  const offset = date - Date.now();
  return offset < 0 || offset >= 2000 ? offset : 0;
}

function retryAfter(response, body) {
  if (typeof body.retryAfter === "number") return body.retryAfter;
  const header = response.headers.get("retry-after");
  if (header === null) return null;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

function stateOf(body, offsetMs) {
  const time = (value) => (typeof value === "string" ? new Date(Date.parse(value) - offsetMs) : null);
  return {
    expires: time(body?.expires),
    resendBlock: time(body?.resendBlock),
    otpBlock: time(body?.otpBlock),
    blocked: body?.blocked === true,
  };
}
