//! Connection strings: redaction of credentials before anything is shown.

/// Query options whose values are secrets and are replaced by `***`.
const SECRET_OPTIONS: [&str; 3] = [
    "password",
    "tlscertificatekeyfilepassword",
    "sslclientcertificatekeypassword",
];

/// A connection string with its password (and any secret query option)
/// replaced by `***`, safe for errors, logs and `Debug` output: the shared
/// [`session_core::url::redact`], which also handles multi-host and
/// `mongodb+srv://` strings.
pub fn redact_url(url: &str) -> String {
    session_core::url::redact(url)
}

/// The password in a connection string, percent-decoded or not, so that
/// messages from the driver can be scrubbed of it.
pub(crate) fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Some((_, rest)) = url.split_once("://") else {
        return found;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
        && !password.is_empty()
    {
        found.push(password.to_owned());
        let decoded = percent_decode(password);
        if decoded != password {
            found.push(decoded);
        }
    }
    if let Some((_, query)) = tail.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some((name, value)) = pair.split_once('=')
                && SECRET_OPTIONS.contains(&name.to_ascii_lowercase().as_str())
                && !value.is_empty()
            {
                found.push(value.to_owned());
            }
        }
    }
    found
}

/// Replaces every secret of `url` found in `message` by `***`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut message = message.to_owned();
    for secret in secrets(url) {
        message = message.replace(&secret, "***");
    }
    message
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redact_url("mongodb://u:hunter2@h:27017/db"),
            "mongodb://u:***@h:27017/db"
        );
        assert_eq!(
            redact_url("mongodb://u:p%40ss@a:1,b:2/?replicaSet=rs&w=majority"),
            "mongodb://u:***@a:1,b:2/?replicaSet=rs&w=majority"
        );
        assert_eq!(
            redact_url("mongodb+srv://u:pw@cluster.example/x"),
            "mongodb+srv://u:***@cluster.example/x"
        );
        assert_eq!(redact_url("mongodb://u@h"), "mongodb://u@h");
        assert_eq!(redact_url("mongodb://h:27017"), "mongodb://h:27017");
        assert_eq!(
            redact_url("mongodb://h/?tls=true&tlsCertificateKeyFilePassword=s3cret"),
            "mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***"
        );
        assert_eq!(
            redact_url("not a url hunter2"),
            "<malformed URL, not shown>"
        );
    }

    #[test]
    fn scrubs_plain_and_decoded_passwords() {
        let url = "mongodb://u:p%40ss@h/?tlsCertificateKeyFilePassword=k3y";
        assert_eq!(scrub("a p%40ss b p@ss c k3y", url), "a *** b *** c ***");
        assert_eq!(scrub("nothing here", "mongodb://h"), "nothing here");
    }
}
