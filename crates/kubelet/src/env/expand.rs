//! `$(VAR)` references, expanded the way Kubernetes does for `env` values, command,
//! args and `subPathExpr`: `$$` is a literal `$`, an undefined reference stays as
//! written, an unterminated `$(` is kept.

/// Expands `$(NAME)` in `input` with `lookup`; `None` keeps the reference as written.
pub(crate) fn expand_with<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            // How many bytes after the `$` the expression took.
            let advance = match rest[0] {
                // `$$`: an escaped operator.
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = &input[cursor + 2..cursor + 1 + close];
                        match lookup(name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(&bytes[cursor..cursor + 2 + close]),
                        }
                        close + 1
                    }
                    // Incomplete reference: keep `$(` and go on after it.
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                // An operator that starts no expression: keep it and the next byte.
                _ => {
                    out.extend_from_slice(&bytes[cursor..cursor + 2]);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < bytes.len() {
        out.extend_from_slice(&bytes[checkpoint..]);
    }
    // Only whole input slices and whole values were copied, and every cut is next to
    // an ASCII byte, so this is valid UTF-8; stay total anyway.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
