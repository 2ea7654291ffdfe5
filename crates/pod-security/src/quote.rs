//! Go's `%q` (`strconv.Quote`): the quoting Kubernetes applies to names, values and
//! annotations inside PodSecurity messages.

use std::fmt::Write as _;

/// `s` in double quotes with Go's escapes: `\"`, `\\`, `\a \b \f \n \r \t \v`,
/// `\xNN` for other ASCII controls, `\uNNNN`/`\UNNNNNNNN` for other characters Go
/// does not print (other controls, non-ASCII spaces, format characters, private
/// use).
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !printable(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` for the characters that matter in practice: controls,
/// spaces other than U+0020, the common format characters and private use are not
/// printed. (Unassigned code points, which Go also escapes, are not known here.)
fn printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
            | 0xF0000..=0x10FFFF
    );
    !format_or_private
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn plain_text_is_only_wrapped_in_quotes() {
        assert_eq!(go_quote("unconfined"), r#""unconfined""#);
        assert_eq!(go_quote("localhost/prof ile"), r#""localhost/prof ile""#);
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    #[test]
    fn quotes_backslashes_and_controls_are_escaped_as_go_does() {
        assert_eq!(go_quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\tc"), r#""a\nb\tc""#);
        assert_eq!(go_quote("\u{1}\u{7f}"), r#""\x01\x7f""#);
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(go_quote("\u{85}"), r#""\u0085""#);
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
