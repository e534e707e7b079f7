// The demo page's script: create → code → verify → the final action's answer, on top of
// otp-client.js. It only ever writes text (textContent), never HTML, so the page's
// Content-Security-Policy can forbid inline script and demand Trusted Types.
//
// The API lives on this page's origin unless <meta name="otp-api" content="https://…">
// names another one (the cross-origin test serves the page that way).

import {
  createOtp,
  resend,
  verify,
  OtpError,
  CredentialInvalidError,
  CredentialNotAllowedError,
  ExpiredError,
  IncorrectCodeError,
  InvalidCookieError,
  InvalidFormatError,
  NetworkError,
  RateLimitedError,
  ResendNotAllowedError,
  TooManyAttemptsError,
  TooManyCredentialsError,
  UnavailableError,
  VerificationNotAllowedError,
} from "./otp-client.js";

const $ = (id) => document.getElementById(id);
const options = { baseUrl: document.querySelector('meta[name="otp-api"]')?.content ?? "" };
const codeInput = $("otp");
const codeLength = Number(codeInput.dataset.length);
const digitsOnly = codeInput.dataset.alphabet === "digits";

/** The latest session state from the server (times on this machine's clock), or null. */
let state = null;
let busy = false;
let ticker = null;

function show(step) {
  for (const id of ["credential-step", "code-step", "done-step"]) {
    $(id).hidden = id !== step;
  }
}

function secondsUntil(date) {
  return Math.max(0, Math.ceil((date.getTime() - Date.now()) / 1000));
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return `${m}:${s}`;
}

function setError(id, text, field) {
  $(id).textContent = text;
  if (field) field.setAttribute("aria-invalid", text ? "true" : "false");
}

function announce(text) {
  $("status").textContent = text;
}

/** What to tell the person about an error, with the API's code for developers. */
function messageFor(err) {
  if (!(err instanceof OtpError)) return `Something went wrong: ${err}`;
  const s = err.state;
  let text;
  if (err instanceof IncorrectCodeError) {
    text = s?.otpBlock
      ? `That code is not right. After several wrong codes, wait ${secondsUntil(s.otpBlock)} s before the next try.`
      : "That code is not right. Check it and try again.";
  } else if (err instanceof TooManyAttemptsError) {
    text = "That code is not right and no attempts are left: this address is blocked in this session.";
  } else if (err instanceof VerificationNotAllowedError) {
    text = s?.blocked
      ? "This address is blocked in this session after too many wrong codes."
      : s?.otpBlock
        ? `Too many wrong codes: wait ${secondsUntil(s.otpBlock)} s before the next try.`
        : "Too many wrong codes: wait a moment before the next try.";
  } else if (err instanceof ResendNotAllowedError) {
    if (s?.blocked) text = "No new code can be sent: this address is blocked in this session.";
    else if (s?.resendBlock && s.resendBlock >= s.expires) text = "No more codes can be sent until this one expires.";
    else if (s?.resendBlock) text = `You can ask for a new code in ${secondsUntil(s.resendBlock)} s.`;
    else text = "No new code can be sent right now.";
  } else if (err instanceof ExpiredError) {
    text = "The code has expired. Ask for a new one.";
  } else if (err instanceof InvalidCookieError) {
    text = "Your sign-in session was not found: it expired, was finished in another tab, or this browser did not keep its cookie. Start again.";
  } else if (err instanceof InvalidFormatError) {
    text = codeHint();
  } else if (err instanceof CredentialInvalidError) {
    text = "That address was not accepted. Check it and try again.";
  } else if (err instanceof CredentialNotAllowedError) {
    text = "That address may not sign in here.";
  } else if (err instanceof TooManyCredentialsError) {
    text = "Too many addresses in one session: use one of them, or wait until their codes expire.";
  } else if (err instanceof RateLimitedError) {
    text = err.retryAfter === null
      ? "Too many requests. Try again in a moment."
      : `Too many requests. Try again in ${err.retryAfter} s.`;
  } else if (err instanceof UnavailableError) {
    text = "The service is unavailable right now. Try again in a moment.";
  } else if (err instanceof NetworkError) {
    text = "The server could not be reached, or the browser refused the call (a page on another site than the API cannot use it).";
  } else {
    text = err.message;
  }
  return `${text} (${err.code})`;
}

function codeHint() {
  return digitsOnly
    ? `The code has ${codeLength} digits.`
    : `The code has ${codeLength} characters: lowercase letters and digits.`;
}

function validCode(code) {
  const pattern = digitsOnly ? /^[0-9]+$/ : /^[a-z0-9]+$/;
  return code.length === codeLength && pattern.test(code);
}

/** Redraws what depends on time: the resend countdown, a running block, the expiry. */
function tick() {
  if (!state) return;
  const resendButton = $("resend");
  if (state.blocked) {
    resendButton.disabled = true;
    resendButton.textContent = "Resend code";
  } else if (state.resendBlock && state.resendBlock.getTime() > Date.now()) {
    resendButton.disabled = true;
    resendButton.textContent = state.resendBlock >= state.expires
      ? "No more resends"
      : `Resend code in ${secondsUntil(state.resendBlock)} s`;
  } else {
    resendButton.disabled = false;
    resendButton.textContent = "Resend code";
  }
  const left = secondsUntil(state.expires);
  if (state.blocked) {
    $("expiry").textContent = "This address is blocked in this session.";
  } else if (state.otpBlock && state.otpBlock.getTime() > Date.now()) {
    $("expiry").textContent = `Verification paused: try again in ${secondsUntil(state.otpBlock)} s.`;
  } else if (left > 0) {
    $("expiry").textContent = `The code expires in ${clock(left)}.`;
  } else {
    $("expiry").textContent = "The code has expired: use another address or start again.";
  }
}

function startTicking() {
  clearInterval(ticker);
  ticker = setInterval(tick, 250);
  tick();
}

function startOver(message) {
  clearInterval(ticker);
  state = null;
  setError("otp-error", "", codeInput);
  setError("credential-error", message ?? "", $("email"));
  show("credential-step");
  $("email").focus();
}

/** A state change from an error body (a wrong code spends an attempt: the cookie changed too). */
function adopt(err) {
  if (err instanceof OtpError && err.state) state = err.state;
  tick();
}

$("credential-step").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  const email = $("email").value.trim();
  if (!email) {
    setError("credential-error", "Enter your email address.", $("email"));
    $("email").focus();
    return;
  }
  busy = true;
  setError("credential-error", "", $("email"));
  announce("Sending a code…");
  try {
    state = await createOtp({ email }, options);
    $("sent-to").textContent = `A code is on its way for ${email}.`;
    codeInput.value = "";
    setError("otp-error", "", codeInput);
    show("code-step");
    codeInput.focus();
    startTicking();
    announce("Code sent. Enter it below.");
  } catch (err) {
    announce("");
    setError("credential-error", messageFor(err), $("email"));
    $("email").focus();
  } finally {
    busy = false;
  }
});

/**
 * Shows a refused verify or resend: a session that is gone starts over; anything else is
 * explained by the code field. Returns whether the code step is still showing.
 */
function showRefusal(err) {
  announce("");
  if (err instanceof ExpiredError || err instanceof InvalidCookieError) {
    startOver(messageFor(err));
    return false;
  }
  adopt(err);
  setError("otp-error", messageFor(err), codeInput);
  return true;
}

$("code-step").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (busy) return;
  const code = codeInput.value.replace(/\s+/g, "").toLowerCase();
  if (!validCode(code)) {
    setError("otp-error", `${codeHint()} (OTP:INVALID_FORMAT)`, codeInput);
    codeInput.focus();
    codeInput.select();
    return;
  }
  busy = true;
  announce("Checking the code…");
  try {
    const answer = await verify(code, options);
    clearInterval(ticker);
    state = null;
    // The final action chose this answer, whatever its status: show it as it came.
    const body = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body, null, 2);
    const ok = answer.status >= 200 && answer.status < 300;
    $("answer").textContent = ok ? body : `HTTP ${answer.status}\n${body}`;
    // The code was right, but only a 2xx from the final action signs in.
    const title = ok ? "You are signed in" : `Not signed in: the final action answered HTTP ${answer.status}`;
    $("done-title").textContent = title;
    show("done-step");
    $("done-title").focus();
    announce(ok ? "Signed in." : `${title}.`);
  } catch (err) {
    if (showRefusal(err)) {
      codeInput.focus();
      codeInput.select();
    }
  } finally {
    busy = false;
  }
});

$("resend").addEventListener("click", async () => {
  if (busy) return;
  busy = true;
  announce("Sending a new code…");
  try {
    state = await resend(options);
    codeInput.value = "";
    setError("otp-error", "", codeInput);
    tick();
    announce("A new code was sent. The previous one no longer works.");
  } catch (err) {
    showRefusal(err);
  } finally {
    busy = false;
    codeInput.focus();
  }
});

$("restart").addEventListener("click", () => startOver());
$("again").addEventListener("click", () => startOver());
