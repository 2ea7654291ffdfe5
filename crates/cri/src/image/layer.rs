//! One image layer: a tar of files, directories and symlinks, byte-for-byte the same
//! for the same inputs (sorted entries, mtime 0, owner root).

use std::collections::BTreeMap;
use std::io::{self, Write as _};

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

use super::Compression;

/// What a path in the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// A layer being put together; paths are relative (`bin/sh`), written in sorted order.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    entries: BTreeMap<String, Entry>,
}

/// A finished layer blob.
#[derive(Debug)]
pub(crate) struct Blob {
    /// The bytes as stored (compressed or not).
    pub(crate) data: Vec<u8>,
    /// `sha256:…` of `data`.
    pub(crate) digest: String,
    /// `sha256:…` of the uncompressed tar (the config's diff ID).
    pub(crate) diff_id: String,
    pub(crate) media_type: &'static str,
}

impl Layer {
    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.entries.insert(path.to_owned(), Entry::Dir { mode });
        self
    }

    pub(crate) fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> &mut Self {
        self.entries
            .insert(path.to_owned(), Entry::File { mode, data });
        self
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let target = target.to_owned();
        self.entries
            .insert(path.to_owned(), Entry::Symlink { target });
        self
    }

    /// The layer as an uncompressed tar.
    pub(crate) fn tar(&self) -> io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        builder.into_inner()
    }

    /// The layer as a blob of an image.
    pub(crate) fn blob(&self, compression: Compression) -> io::Result<Blob> {
        let tar = self.tar()?;
        let diff_id = sha256(&tar);
        let (data, media_type) = match compression {
            Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => {
                // flate2 writes mtime 0 and no file name: the same bytes every time.
                let mut gz = GzEncoder::new(Vec::new(), GzLevel::default());
                gz.write_all(&tar)?;
                (gz.finish()?, "application/vnd.oci.image.layer.v1.tar+gzip")
            }
        };
        Ok(Blob {
            digest: sha256(&data),
            diff_id,
            data,
            media_type,
        })
    }
}

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Layer {
        let mut layer = Layer::default();
        layer
            .symlink("bin/sh", "busybox")
            .file("bin/busybox", 0o755, b"#!fake".to_vec())
            .dir("tmp", 0o1777)
            .dir("bin", 0o755);
        layer
    }

    #[test]
    fn the_same_inputs_make_the_same_bytes() {
        for compression in [Compression::None, Compression::Gzip] {
            let a = sample().blob(compression).expect("blob");
            let b = sample().blob(compression).expect("blob");
            assert_eq!(a.data, b.data);
            assert_eq!(a.digest, b.digest);
        }
    }

    #[test]
    fn entries_are_sorted_and_owned_by_root_at_time_zero() {
        let tar = sample().tar().expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            assert_eq!(header.mtime().expect("mtime"), 0);
            assert_eq!(header.uid().expect("uid"), 0);
            assert_eq!(header.gid().expect("gid"), 0);
            let path = entry.path().expect("path").to_string_lossy().into_owned();
            if path == "bin/sh" {
                let target = entry.link_name().expect("link").expect("a target");
                assert_eq!(target.to_string_lossy(), "busybox");
            }
            if path == "tmp/" {
                assert_eq!(header.mode().expect("mode"), 0o1777);
            }
            seen.push(path);
        }
        assert_eq!(seen, ["bin/", "bin/busybox", "bin/sh", "tmp/"]);
    }

    #[test]
    fn the_diff_id_is_the_digest_of_the_uncompressed_tar() {
        let plain = sample().blob(Compression::None).expect("blob");
        let gzip = sample().blob(Compression::Gzip).expect("blob");
        assert_eq!(plain.digest, plain.diff_id);
        assert_eq!(gzip.diff_id, plain.diff_id);
        assert_ne!(gzip.digest, plain.digest);
        assert_eq!(
            gzip.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}
