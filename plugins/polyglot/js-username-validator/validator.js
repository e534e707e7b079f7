// A credential validator for usernames, in JavaScript (QuickJS, built by componentize-qjs).
//
// Accepts `{"username": "..."}` and also a bare JSON string `"..."`. The name is trimmed and
// lower-cased; it must then be 3 to 32 characters of [a-z0-9_] and start with a letter.
// The credential id is the canonical name, the channel is "default"; there is no destination
// group (`group` absent), so abuse limits count usernames under their channel.
import log from "otp:plugin/log@0.2.0";

const NAME = /^[a-z][a-z0-9_]{2,31}$/;

function username(body) {
    let value;
    try {
        value = JSON.parse(body);
    } catch (e) {
        throw "the body is not JSON";
    }
    if (typeof value === "string") {
        return value;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw "expected {\"username\": \"...\"} or a JSON string";
    }
    const keys = Object.keys(value);
    if (keys.length !== 1 || keys[0] !== "username") {
        throw "expected exactly one field, \"username\"";
    }
    if (typeof value.username !== "string") {
        throw "\"username\" must be a string";
    }
    return value.username;
}

export const credentialValidation = {
    // validate: func(body: string, context: request-context) -> result<credential, string>
    // A thrown string becomes `err(message)`.
    validate(body, context) {
        const name = username(body).trim().toLowerCase();
        if (!NAME.test(name)) {
            throw `invalid username ${JSON.stringify(name)}: 3 to 32 of [a-z0-9_], starting with a letter`;
        }
        log.log("debug", `accepted username ${name}`);
        // An absent `option<string>` is `undefined`.
        return { id: name, channel: "default", group: undefined };
    },
};
