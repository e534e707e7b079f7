//! Localized message templates: per-locale texts from the manifest's `[config]`, the
//! placeholders they may use, and rendering one for a request.
//!
//! Keys (TOML dotted keys, so `template.pt-BR.subject = "..."` works unquoted):
//!
//! | medium | keys |
//! |---|---|
//! | SMS | `template.<locale>` — the text |
//! | email | `template.<locale>.subject` and `template.<locale>.body` — both |
//!
//! Placeholders: `{code}` (required in every text that carries the message: the SMS text, the
//! email body), `{minutes}` (whole minutes until the code expires, rounded up) and `{app}`
//! (`[config] app_name`); `{{` and `}}` are literal braces. `default_locale` (default `en`)
//! is the fallback when no template matches the request's locale; English texts are built
//! in and used when the manifest configures no `en` template. Every template is checked on
//! every call, so a typo in any of them fails every send loudly (as *unavailable*, with the
//! key in the log) instead of only the requests in that language.

use crate::config::{Config, ConfigError};
use crate::locale;
use std::collections::BTreeMap;

/// What a template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// A text message: one text per locale.
    Sms,
    /// An email: a subject and a plain-text body per locale.
    Email,
}

/// The built-in English SMS: 41 GSM-7 characters plus the code and the app name.
pub const DEFAULT_SMS: &str = "{code} is your {app} code. It expires in {minutes} min.";
/// The built-in English email subject.
pub const DEFAULT_SUBJECT: &str = "Your {app} sign-in code";
/// The built-in English email body.
pub const DEFAULT_BODY: &str = "Your {app} sign-in code is:\n\n{code}\n\n\
It expires in {minutes} minutes. If you did not ask for it, you can ignore this email.\n";

/// The app name used when the manifest sets no `app_name`.
pub const DEFAULT_APP_NAME: &str = "otp-server";

/// The placeholders, for error messages.
const KNOWN: &str = "use {code}, {minutes} or {app}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Code,
    Minutes,
    App,
}

/// One parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Text {
    source: String,
    pieces: Vec<Piece>,
}

impl Text {
    fn parse(key: &str, source: &str) -> Result<Text, ConfigError> {
        let bad = |message: String| ConfigError::invalid(key, message);
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if name.len() < 32 => name.push(c),
                            _ => {
                                return Err(bad(
                                    "has an unclosed '{' (write {{ for a literal brace)".into(),
                                ))
                            }
                        }
                    }
                    let piece = match name.as_str() {
                        "code" => Piece::Code,
                        "minutes" => Piece::Minutes,
                        "app" => Piece::App,
                        other => {
                            return Err(bad(format!("unknown placeholder {{{other}}}: {KNOWN}")))
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                '}' => return Err(bad("has a lone '}' (write }} for a literal brace)".into())),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Text {
            source: source.to_string(),
            pieces,
        })
    }

    fn has_code(&self) -> bool {
        self.pieces.contains(&Piece::Code)
    }

    fn render(&self, values: &Values<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Code => out.push_str(values.code),
                Piece::Minutes => out.push_str(&values.minutes.to_string()),
                Piece::App => out.push_str(values.app),
            }
        }
        out
    }

    /// The text with everything but the code filled in (for checks that must not see it).
    fn render_without_code(&self, values: &Values<'_>, code_length: usize) -> String {
        let filler = "0".repeat(code_length);
        self.render(&Values {
            code: &filler,
            ..*values
        })
    }
}

#[derive(Clone, Copy)]
struct Values<'a> {
    code: &'a str,
    minutes: u64,
    app: &'a str,
}

#[derive(Debug, Clone)]
struct Localized {
    subject: Option<Text>,
    body: Text,
}

/// Every template of a manifest, checked.
#[derive(Debug, Clone)]
pub struct Catalog {
    medium: Medium,
    /// Locale tag as written in the manifest → its texts.
    templates: BTreeMap<String, Localized>,
    default_locale: String,
    app: String,
}

/// A message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The locale of the template used, as written in the manifest (`en` for the built-in).
    pub locale: String,
    /// The email subject (`None` for SMS).
    pub subject: Option<String>,
    /// The SMS text or the email body.
    pub body: String,
    /// The body with a placeholder code of the same length instead of the code: what the
    /// SMS segment check looks at, so that no check or log line ever sees the code.
    pub body_without_code: String,
}

impl Catalog {
    /// Reads and checks every template of `config`.
    pub fn from_config(config: &Config, medium: Medium) -> Result<Catalog, ConfigError> {
        let mut parts: BTreeMap<String, (Option<Text>, Option<Text>)> = BTreeMap::new();
        for (key, value) in config.with_prefix("template.") {
            let rest = &key["template.".len()..];
            let (tag, part) =
                match (medium, rest.rsplit_once('.')) {
                    (Medium::Email, Some((tag, part @ ("subject" | "body")))) => (tag, part),
                    (Medium::Sms, None) => (rest, "body"),
                    (Medium::Email, _) => return Err(ConfigError::invalid(
                        key,
                        "email templates are template.<locale>.subject and template.<locale>.body",
                    )),
                    (Medium::Sms, Some(_)) => {
                        return Err(ConfigError::invalid(
                            key,
                            "SMS templates are template.<locale> (one text per locale)",
                        ))
                    }
                };
            if tag.is_empty() || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ConfigError::invalid(
                    key,
                    "the locale must be a language tag such as en or pt-BR",
                ));
            }
            let text = Text::parse(key, value)?;
            let entry = parts.entry(tag.to_string()).or_default();
            if part == "subject" {
                if value.contains(['\r', '\n']) {
                    return Err(ConfigError::invalid(key, "a subject is one line"));
                }
                entry.0 = Some(text);
            } else {
                if !text.has_code() {
                    return Err(ConfigError::invalid(key, "has no {code} placeholder"));
                }
                entry.1 = Some(text);
            }
        }
        let mut templates = BTreeMap::new();
        for (tag, (subject, body)) in parts {
            let complete = match (medium, subject, body) {
                (Medium::Sms, None, Some(body)) => Localized {
                    subject: None,
                    body,
                },
                (Medium::Email, Some(subject), Some(body)) => Localized {
                    subject: Some(subject),
                    body,
                },
                (_, _, _) => {
                    return Err(ConfigError::invalid(
                        format!("template.{tag}"),
                        "an email template needs both .subject and .body",
                    ))
                }
            };
            templates.insert(tag, complete);
        }
        if !templates.keys().any(|tag| tag.eq_ignore_ascii_case("en")) {
            let builtin =
                |key: &str, text: &str| Text::parse(key, text).expect("built-in texts parse");
            let localized = match medium {
                Medium::Sms => Localized {
                    subject: None,
                    body: builtin("built-in", DEFAULT_SMS),
                },
                Medium::Email => Localized {
                    subject: Some(builtin("built-in", DEFAULT_SUBJECT)),
                    body: builtin("built-in", DEFAULT_BODY),
                },
            };
            templates.insert("en".to_string(), localized);
        }
        let default_locale = config.get("default_locale").unwrap_or("en").to_string();
        if !templates
            .keys()
            .any(|tag| tag.eq_ignore_ascii_case(&default_locale))
        {
            return Err(ConfigError::invalid(
                "default_locale",
                format!("no template.{default_locale} is configured"),
            ));
        }
        let app = config
            .get("app_name")
            .unwrap_or(DEFAULT_APP_NAME)
            .to_string();
        Ok(Catalog {
            medium,
            templates,
            default_locale,
            app,
        })
    }

    /// The configured locales (and `en` when built in).
    pub fn locales(&self) -> Vec<&str> {
        self.templates.keys().map(String::as_str).collect()
    }

    /// Fills the best template for `requested` with the code and the minutes left.
    pub fn render(&self, requested: &[String], code: &str, minutes: u64) -> Rendered {
        let available = self.locales();
        let tag = locale::best(&available, requested, &self.default_locale)
            .expect("the default locale always has a template")
            .to_string();
        let template = &self.templates[&tag];
        let values = Values {
            code,
            minutes,
            app: &self.app,
        };
        Rendered {
            subject: template.subject.as_ref().map(|s| s.render(&values)),
            body: template.body.render(&values),
            body_without_code: template
                .body
                .render_without_code(&values, code.chars().count()),
            locale: tag,
        }
    }

    /// What the catalog is for.
    pub fn medium(&self) -> Medium {
        self.medium
    }
}

/// Whole minutes from `now_ms` until `expires_at_ms`, rounded up, at least 1.
pub fn minutes_left(expires_at_ms: u64, now_ms: u64) -> u64 {
    expires_at_ms.saturating_sub(now_ms).div_ceil(60_000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gsm;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn ask(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn english_defaults_fill_every_placeholder() {
        let sms = Catalog::from_config(&config(&[("app_name", "Acme")]), Medium::Sms).unwrap();
        let r = sms.render(&ask(&["ja"]), "AB12CD34EF", 5);
        assert_eq!(r.locale, "en");
        assert_eq!(r.subject, None);
        assert_eq!(r.body, "AB12CD34EF is your Acme code. It expires in 5 min.");
        assert_eq!(
            r.body_without_code,
            "0000000000 is your Acme code. It expires in 5 min."
        );

        let email = Catalog::from_config(&config(&[]), Medium::Email).unwrap();
        let r = email.render(&[], "123456", 10);
        assert_eq!(r.subject.as_deref(), Some("Your otp-server sign-in code"));
        assert!(r.body.contains("\n\n123456\n\n"), "{}", r.body);
        assert!(r.body.contains("expires in 10 minutes"));
    }

    #[test]
    fn the_built_in_sms_fits_one_gsm7_segment() {
        // A 10-character code, the longest expiry a server allows (4 digits of minutes) and
        // an app name of 60 characters: still one segment.
        let sms =
            Catalog::from_config(&config(&[("app_name", &"A".repeat(60))]), Medium::Sms).unwrap();
        let r = sms.render(&[], "0123456789", 1440);
        let s = gsm::segments(&r.body);
        assert_eq!((s.encoding, s.count), (gsm::Encoding::Gsm7, 1), "{s:?}");
    }

    #[test]
    fn locale_selection_and_fallback() {
        let c = config(&[
            (
                "template.pt-BR",
                "Seu código {app}: {code} (expira em {minutes} min)",
            ),
            ("template.de", "Ihr {app}-Code: {code}"),
            ("template.en", "Code {code}"),
            ("app_name", "Loja"),
        ]);
        let sms = Catalog::from_config(&c, Medium::Sms).unwrap();
        assert_eq!(sms.locales(), ["de", "en", "pt-BR"]);
        let r = sms.render(&ask(&["pt-br", "en"]), "X1", 3);
        assert_eq!(
            (r.locale.as_str(), r.body.as_str()),
            ("pt-BR", "Seu código Loja: X1 (expira em 3 min)")
        );
        assert_eq!(sms.render(&ask(&["pt-PT"]), "X1", 3).locale, "pt-BR");
        assert_eq!(
            sms.render(&ask(&["de-AT"]), "X1", 3).body,
            "Ihr Loja-Code: X1"
        );
        assert_eq!(sms.render(&ask(&["fr", "de"]), "X1", 3).locale, "de");
        // No match: the default language, here the configured English text.
        assert_eq!(sms.render(&ask(&["fr"]), "X1", 3).body, "Code X1");

        // Another default language.
        let c = config(&[
            ("template.de", "Ihr Code: {code}"),
            ("default_locale", "de"),
        ]);
        let sms = Catalog::from_config(&c, Medium::Sms).unwrap();
        assert_eq!(sms.render(&ask(&["fr"]), "X1", 3).body, "Ihr Code: X1");
        // English is still built in for readers who ask for it.
        assert_eq!(sms.render(&ask(&["en-GB"]), "X1", 3).locale, "en");
    }

    #[test]
    fn email_templates_come_in_pairs() {
        let c = config(&[
            ("template.fr.subject", "Votre code {app}"),
            (
                "template.fr.body",
                "Code : {code}, valable {minutes} minutes. {{pas de réponse}}",
            ),
        ]);
        let email = Catalog::from_config(&c, Medium::Email).unwrap();
        let r = email.render(&ask(&["fr-FR"]), "Q9", 2);
        assert_eq!(r.subject.as_deref(), Some("Votre code otp-server"));
        assert_eq!(r.body, "Code : Q9, valable 2 minutes. {pas de réponse}");

        let half = config(&[("template.fr.subject", "Votre code")]);
        let e = Catalog::from_config(&half, Medium::Email).unwrap_err();
        assert!(e.to_string().contains("template.fr"), "{e}");
    }

    #[test]
    fn bad_templates_are_refused_with_their_key() {
        for (pairs, medium, needle) in [
            (
                vec![("template.en", "Code {cod}")],
                Medium::Sms,
                "unknown placeholder {cod}",
            ),
            (
                vec![("template.en", "no code here")],
                Medium::Sms,
                "has no {code}",
            ),
            (vec![("template.en", "{code} {")], Medium::Sms, "unclosed"),
            (vec![("template.en", "{code} }")], Medium::Sms, "lone '}'"),
            (
                vec![("template.en.body", "{code}")],
                Medium::Sms,
                "one text per locale",
            ),
            (
                vec![("template.en", "{code}")],
                Medium::Email,
                ".subject and",
            ),
            (
                vec![
                    ("template.en.subject", "a\nb"),
                    ("template.en.body", "{code}"),
                ],
                Medium::Email,
                "one line",
            ),
            (
                vec![("template.e n", "{code}")],
                Medium::Sms,
                "language tag",
            ),
            (
                vec![("default_locale", "it")],
                Medium::Sms,
                "no template.it",
            ),
        ] {
            let e = Catalog::from_config(&config(&pairs), medium)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{pairs:?}: {e}");
            assert!(e.contains(pairs[0].0) || pairs[0].0 == "template.en", "{e}");
        }
    }

    #[test]
    fn minutes_round_up() {
        assert_eq!(minutes_left(1_000_000 + 300_000, 1_000_000), 5);
        assert_eq!(minutes_left(1_000_000 + 299_001, 1_000_000), 5);
        assert_eq!(minutes_left(1_000_000 + 240_001, 1_000_000), 5);
        assert_eq!(minutes_left(1_000_000, 1_000_000), 1);
        assert_eq!(minutes_left(0, 1_000_000), 1);
    }
}
