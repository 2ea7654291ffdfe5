//! Key ranges shared by the backends: prefixes become half-open byte ranges.

/// The first key after every key that starts with `prefix`, or `None` when no such key
/// exists (the prefix is empty or all `0xff`): then the range is unbounded above.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The lowest key a list may return: `prefix`, or the key right after `start_after`
/// when that is higher.
pub(crate) fn list_start(prefix: &str, start_after: Option<&str>) -> Vec<u8> {
    let prefix = prefix.as_bytes().to_vec();
    match start_after {
        Some(after) => {
            let mut next = after.as_bytes().to_vec();
            next.push(0);
            next.max(prefix)
        }
        None => prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_should_increment_the_last_byte() {
        assert_eq!(prefix_end(b"/a/b/"), Some(b"/a/b0".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn list_start_should_skip_past_start_after() {
        assert_eq!(list_start("/a/", None), b"/a/".to_vec());
        assert_eq!(list_start("/a/", Some("/a/x")), b"/a/x\0".to_vec());
        assert_eq!(list_start("/b/", Some("/a/x")), b"/b/".to_vec());
    }
}
