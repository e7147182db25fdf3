//! The job's environment: a base with the job's overlay applied, built by us.
//!
//! We build `envp` ourselves rather than let libc pass `environ` on, because
//! `environ` may be rewritten by another thread at any moment (Node's
//! `process.env.X = ...` calls `setenv` on the JS thread, which Rust's env lock
//! does not cover). The Node binding therefore always gives a base snapshot taken
//! on the JS thread; reading this process's environment is only the fallback.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The complete environment a job starts with, in a stable order, as the
/// `KEY=VALUE` entries `execve` takes (built once per job: one allocation a
/// variable, nothing copied twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    entries: Vec<Vec<u8>>,
}

impl Environment {
    /// `base` (or, when `None`, this process's environment read now) with `overlay`
    /// applied in order: `Some` sets a variable, `None` removes it.
    ///
    /// A key that appears twice in the base keeps its first value, as `getenv` would;
    /// a key removed and set again keeps its original place.
    pub fn new(
        base: Option<&[(OsString, OsString)]>,
        overlay: &[(String, Option<String>)],
    ) -> Environment {
        let read_now: Vec<(OsString, OsString)>;
        let base = match base {
            Some(base) => base,
            None => {
                read_now = std::env::vars_os().collect();
                &read_now
            }
        };
        let mut slots: Vec<Option<Vec<u8>>> = Vec::with_capacity(base.len() + overlay.len());
        // Keys borrowed from `base` and `overlay`: where each key's entry is.
        let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(slots.capacity());
        for (key, value) in base {
            put(
                &mut slots,
                &mut index,
                key.as_bytes(),
                Some(value.as_bytes()),
                false,
            );
        }
        for (key, value) in overlay {
            let value = value.as_ref().map(String::as_bytes);
            put(&mut slots, &mut index, key.as_bytes(), value, true);
        }
        Environment {
            entries: slots.into_iter().flatten().collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&OsStr> {
        let key = key.as_bytes();
        self.entries
            .iter()
            .find(|entry| entry.starts_with(key) && entry.get(key.len()) == Some(&b'='))
            .map(|entry| OsStr::from_bytes(&entry[key.len() + 1..]))
    }

    /// The `KEY=VALUE` entries, as bytes.
    pub fn into_entries(self) -> Vec<Vec<u8>> {
        self.entries
    }
}

/// Sets `key` (or removes it, for `None`) unless it is there and `replace` is false.
fn put<'k>(
    slots: &mut Vec<Option<Vec<u8>>>,
    index: &mut HashMap<&'k [u8], usize>,
    key: &'k [u8],
    value: Option<&[u8]>,
    replace: bool,
) {
    let entry = |value: &[u8]| {
        let mut entry = Vec::with_capacity(key.len() + 1 + value.len());
        entry.extend_from_slice(key);
        entry.push(b'=');
        entry.extend_from_slice(value);
        entry
    };
    match index.get(key) {
        Some(&at) if replace => slots[at] = value.map(entry),
        Some(_) => {}
        None => {
            if let Some(value) = value {
                index.insert(key, slots.len());
                slots.push(Some(entry(value)));
            }
        }
    }
}

/// Convenience for callers that hold the base as strings.
pub fn os_pairs<I, K, V>(pairs: I) -> Vec<(OsString, OsString)>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<Vec<u8>>,
    V: Into<Vec<u8>>,
{
    pairs
        .into_iter()
        .map(|(k, v)| (OsString::from_vec(k.into()), OsString::from_vec(v.into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn overlay_sets_replaces_and_removes_in_order() {
        let base = os_pairs([("A", "1"), ("B", "2"), ("A", "shadowed"), ("C", "3")]);
        let env = Environment::new(
            Some(&base),
            &overlay(&[
                ("B", None),
                ("C", Some("30")),
                ("D", Some("4")),
                ("D", None),
                ("B", Some("back")),
            ]),
        );
        assert_eq!(env.into_entries(), [&b"A=1"[..], b"B=back", b"C=30"]);
    }

    #[test]
    fn envp_is_key_equals_value() {
        let env = Environment::new(Some(&os_pairs([("K", "v=w")])), &[]);
        assert_eq!(env.get("K"), Some(OsStr::new("v=w")));
        assert_eq!(env.get("k"), None);
        assert_eq!(env.into_entries(), [b"K=v=w"]);
    }

    #[test]
    fn no_base_means_this_process_environment() {
        let env = Environment::new(None, &overlay(&[("LW_ENV_TEST_ONLY_HERE", Some("x"))]));
        assert_eq!(env.get("PATH"), std::env::var_os("PATH").as_deref());
        assert_eq!(env.get("LW_ENV_TEST_ONLY_HERE"), Some(OsStr::new("x")));
    }
}
