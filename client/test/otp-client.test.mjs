// Tests of otp-client.js under Node's test runner (`node --test client/test/otp-client.test.mjs`), against a
// live otp-server: this file starts target/debug/otp-server (or $OTP_SERVER_BIN) on a free
// port with the default plugins in a scratch folder, reads codes from the dev sender's log
// line, and stops it at the end. Node's fetch keeps no cookies, so the calls go through a
// small cookie jar that plays the browser's part. A few cases (codes the server does not
// send in this configuration, a skewed clock) use a fake fetch instead.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

import {
  createOtp,
  resend,
  verify,
  errorFor,
  OtpError,
  CredentialInvalidError,
  IncorrectCodeError,
  InvalidCookieError,
  InvalidFormatError,
  NetworkError,
  RateLimitedError,
  ResendNotAllowedError,
  UnavailableError,
  VerificationNotAllowedError,
  NETWORK,
  UNEXPECTED_RESPONSE,
} from "../otp-client.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The server under test: its base URL and every log line so far. */
const server = { base: "", lines: [], child: null, waiters: [] };

before(async () => {
  const binary = process.env.OTP_SERVER_BIN ?? join(root, "target", "debug", "otp-server");
  assert.ok(existsSync(binary), `${binary} is missing: cargo build -p otp-server`);
  mkdirSync(join(root, "target", "blackbox"), { recursive: true });
  const plugins = mkdtempSync(join(root, "target", "blackbox", "node-client-"));
  for (const name of ["default-credential", "dev-sender", "json-final"]) {
    const file = join(root, "plugins", "dist", `${name}.wasm`);
    assert.ok(existsSync(file), `${file} is missing: scripts/build-plugins.sh`);
    cpSync(file, join(plugins, `${name}.wasm`));
  }
  server.child = spawn(binary, [], {
    env: {
      PATH: process.env.PATH,
      OTP_LISTEN: "127.0.0.1:0",
      OTP_PLUGINS_DIR: plugins,
      OTP_CACHE_DIR: join(root, "target", "blackbox-wasm-cache"),
      OTP_TEST_CLOCK: "1",
      OTP_VALIDATE_DEADLINE_MS: "2000",
      OTP_LOG: "info",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  createInterface({ input: server.child.stderr }).on("line", (line) => {
    server.lines.push(line);
    server.waiters = server.waiters.filter((w) => !w());
  });
  const line = await waitForLine((l) => l.includes("otp-server listening"), 60_000);
  server.base = `http://${/address=(\S+)/.exec(line)[1]}`;
});

after(() => {
  server.child?.kill();
});

function waitForLine(match, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const line = server.lines.find(match);
      if (line !== undefined) {
        clearTimeout(timer);
        resolve(line);
        return true;
      }
      return false;
    };
    const timer = setTimeout(
      () => reject(new Error(`no such log line; the log:\n${server.lines.join("\n")}`)),
      timeoutMs,
    );
    if (!check()) server.waiters.push(check);
  });
}

/** The `n`-th code (1-based) the dev sender logged for a credential id. */
async function code(credentialId, n = 1) {
  const prefix = `OTP for ${credentialId} via `;
  const codes = () =>
    server.lines
      .filter((l) => l.includes(prefix))
      .map((l) => /: (\S+) \(/.exec(l.slice(l.indexOf(prefix) + prefix.length))[1]);
  await waitForLine(() => codes().length >= n);
  return codes()[n - 1];
}

/** A fetch that keeps the session cookie like a browser: stores Set-Cookie, sends Cookie. */
function cookieJar() {
  const jar = new Map();
  const jarFetch = async (url, init = {}) => {
    const headers = new Headers(init.headers);
    if (jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
    const response = await fetch(url, { ...init, headers });
    // getSetCookie is Node 19.7+; the server sends at most one Set-Cookie per answer.
    const setCookies = response.headers.getSetCookie?.() ?? [response.headers.get("set-cookie") ?? ""];
    for (const cookie of setCookies.filter(Boolean)) {
      const [pair, ...attributes] = cookie.split(";");
      const [name, value] = pair.split("=");
      const gone = value === "" || attributes.some((a) => a.trim().toLowerCase() === "max-age=0");
      if (gone) jar.delete(name);
      else jar.set(name, value);
    }
    return response;
  };
  return { jar, options: () => ({ baseUrl: server.base, fetch: jarFetch }) };
}

async function advanceClock(ms) {
  const response = await fetch(`${server.base}/test/clock?ms=${ms}`, { method: "POST" });
  assert.equal(response.status, 200);
}

/** A fetch that answers every call with one response (codes this server does not send). */
function fakeFetch(status, body, headers = {}) {
  return async () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", ...headers },
    });
}

describe("against a live server", () => {
  test("create, a wrong code, a refused resend, a resend after the cooldown, verify", async () => {
    const { jar, options } = cookieJar();
    const id = JSON.stringify({ email: "flow@example.com" });
    const state = await createOtp({ email: "flow@example.com" }, options());
    assert.ok(state.expires instanceof Date && state.expires > new Date());
    assert.ok(state.resendBlock instanceof Date && state.resendBlock > new Date());
    assert.equal(state.otpBlock, null);
    assert.equal(state.blocked, false);
    assert.ok(jar.has("o"), "the session cookie is set");
    const first = await code(id, 1);

    const wrong = first.startsWith("a") ? `b${first.slice(1)}` : `a${first.slice(1)}`;
    await assert.rejects(verify(wrong, options()), (err) => {
      assert.ok(err instanceof IncorrectCodeError && err instanceof OtpError);
      assert.equal(err.code, "OTP:INCORRECT");
      assert.equal(err.status, 403);
      assert.ok(err.state.expires instanceof Date);
      assert.equal(typeof err.message, "string");
      return true;
    });

    await assert.rejects(resend(options()), (err) => {
      assert.ok(err instanceof ResendNotAllowedError);
      assert.equal(err.code, "OTP:RESENT_NOT_ALLOWED");
      assert.ok(err.state.resendBlock > new Date(), "the cooldown end");
      return true;
    });

    await advanceClock(31_000);
    const resent = await resend(options());
    assert.ok(resent.resendBlock instanceof Date, "no resend left: blocked until expiry");
    const second = await code(id, 2);
    assert.notEqual(second, first);

    const answer = await verify(second, options());
    assert.equal(answer.status, 200);
    assert.deepEqual(answer.body, { credential: id, message: "successfully verified" });
    assert.ok(!jar.has("o"), "the cookie is deleted");
  });

  test("a temporary block, then verification refused while it runs", async () => {
    const { options } = cookieJar();
    const id = JSON.stringify({ email: "block@example.com" });
    await createOtp({ email: "block@example.com" }, options());
    const right = await code(id, 1);
    const wrong = right.startsWith("a") ? `b${right.slice(1)}` : `a${right.slice(1)}`;
    await assert.rejects(verify(wrong, options()), IncorrectCodeError);
    await assert.rejects(verify(wrong, options()), (err) => {
      assert.ok(err instanceof IncorrectCodeError);
      assert.ok(err.state.otpBlock > new Date(), "a temporary block began");
      return true;
    });
    await assert.rejects(verify(right, options()), (err) => {
      assert.ok(err instanceof VerificationNotAllowedError);
      assert.ok(err.state.otpBlock instanceof Date);
      return true;
    });
  });

  test("no session cookie", async () => {
    await assert.rejects(verify("abcdefghij", { baseUrl: server.base }), (err) => {
      assert.ok(err instanceof InvalidCookieError);
      assert.equal(err.status, 400);
      assert.equal(err.state, null);
      return true;
    });
  });

  test("a code of the wrong format", async () => {
    await assert.rejects(verify("abc", { baseUrl: server.base }), InvalidFormatError);
  });

  test("a credential the validator refuses", async () => {
    await assert.rejects(createOtp(null, { baseUrl: server.base }), (err) => {
      assert.ok(err instanceof CredentialInvalidError);
      assert.equal(err.code, "CREDENTIAL:INVALID");
      return true;
    });
  });

  test("an answer that is not the API's", async () => {
    await assert.rejects(createOtp("x", { baseUrl: `${server.base}/nope` }), (err) => {
      assert.equal(err.constructor, OtpError);
      assert.equal(err.code, UNEXPECTED_RESPONSE);
      assert.equal(err.status, 404);
      return true;
    });
  });

  test("a server that does not answer", async () => {
    await assert.rejects(createOtp("x", { baseUrl: "http://127.0.0.1:9" }), (err) => {
      assert.ok(err instanceof NetworkError);
      assert.equal(err.code, NETWORK);
      assert.equal(err.status, 0);
      return true;
    });
  });
});

describe("without a server", () => {
  test("known codes get their class, unknown codes a plain OtpError", () => {
    assert.ok(errorFor("RATE:LIMITED", "m") instanceof RateLimitedError);
    assert.ok(errorFor("STORE:UNAVAILABLE", "m") instanceof UnavailableError);
    const unknown = errorFor("SOMETHING:NEW", "m");
    assert.equal(unknown.constructor, OtpError);
    assert.equal(unknown.code, "SOMETHING:NEW");
    assert.equal(unknown.name, "OtpError");
    assert.equal(errorFor("OTP:INCORRECT", "m").name, "IncorrectCodeError");
    assert.equal(errorFor("toString", "m").constructor, OtpError);
  });

  test("429 RATE:LIMITED carries Retry-After", async () => {
    const fetch = fakeFetch(429, { error: "RATE:LIMITED", message: "slow down" }, { "retry-after": "7" });
    await assert.rejects(createOtp("x", { fetch }), (err) => {
      assert.ok(err instanceof RateLimitedError);
      assert.equal(err.retryAfter, 7);
      assert.equal(err.status, 429);
      assert.equal(err.message, "slow down");
      return true;
    });
  });

  test("verify: any answer but the server's own refusals is the final action's", async () => {
    // A final action may answer any status with any body, an `error` field included.
    const refused = { error: "account_locked", message: "ask support" };
    const answer = await verify("0123456789", { fetch: fakeFetch(403, refused) });
    assert.equal(answer.status, 403);
    assert.deepEqual(answer.body, refused);
    const plain = await verify("0123456789", { fetch: fakeFetch(502, "bad gateway") });
    assert.equal(plain.status, 502);
    // The server's own refusals still reject, typed.
    const wrong = { error: "OTP:INCORRECT", message: "wrong", expires: new Date().toISOString() };
    await assert.rejects(verify("0123456789", { fetch: fakeFetch(403, wrong) }), IncorrectCodeError);
    await assert.rejects(
      verify("0123456789", { fetch: fakeFetch(500, { error: "PLUGIN:FAILED", message: "m" }) }),
      (err) => err.code === "PLUGIN:FAILED" && err.status === 500,
    );
    // Elsewhere an answer without an API error body is unexpected.
    await assert.rejects(createOtp("x", { fetch: fakeFetch(502, "bad gateway") }), (err) => {
      assert.equal(err.code, UNEXPECTED_RESPONSE);
      return true;
    });
    // So is a success without a session state (another server, a proxy's page).
    for (const call of [
      () => createOtp("x", { fetch: fakeFetch(200, "<html>welcome</html>") }),
      () => resend({ fetch: fakeFetch(200, {}) }),
      () => resend({ fetch: fakeFetch(200, { expires: "soon" }) }),
    ]) {
      await assert.rejects(call(), (err) => {
        assert.equal(err.code, UNEXPECTED_RESPONSE);
        assert.equal(err.status, 200);
        return true;
      });
    }
  });

  test("a skewed server clock is corrected", async () => {
    const serverNow = Date.now() + 3_600_000;
    const expires = new Date(serverNow + 180_000).toISOString();
    const fetch = fakeFetch(200, { expires }, { date: new Date(serverNow).toUTCString() });
    const state = await createOtp("x", { fetch });
    const left = state.expires.getTime() - Date.now();
    assert.ok(left > 170_000 && left <= 181_000, `${left} ms left`);
  });

  test("a local clock a little ahead never makes a countdown end early", async () => {
    // The server's clock 0.8 s behind this one: below the 2 s a clock behind needs.
    const serverNow = Date.now() - 800;
    const body = {
      expires: new Date(serverNow + 180_000).toISOString(),
      resendBlock: new Date(serverNow + 30_000).toISOString(),
    };
    const fetch = fakeFetch(200, body, { date: new Date(serverNow).toUTCString() });
    const state = await createOtp("x", { fetch });
    const left = state.resendBlock.getTime() - Date.now();
    assert.ok(left >= 29_900 && left <= 31_000, `${left} ms left`);
  });
});
