//! Profile images sent with openers: a URL as given, or a file read from the configured
//! image folder (`[fluidtalk] image_dir`) only.
//!
//! A lead file is outside input: a `profile_image` naming `/etc/passwd`, `../secret.txt`,
//! a symlink out of the folder, a FIFO or a device must never make the runner read it (or
//! hang on it). So a local image is a relative path inside the folder, resolved with
//! symlinks and checked to stay inside, opened without blocking, a regular file of at most
//! `MAX_IMAGE_BYTES`, read within the call's time budget. Anything else fails that lead
//! alone (`local_file`), before anything is sent.

use crate::fluidtalk::{Error as ApiError, ImageFile};
use std::path::{Component, Path};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The largest image file sent.
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// A lead's profile image, ready to send.
#[derive(Debug)]
pub enum ProfileImage {
    None,
    Url(String),
    File(ImageFile),
}

/// Resolves `value` (a lead's `profile_image`) against the image folder `dir`, reading a
/// local file within `budget`.
pub async fn resolve(
    value: Option<&str>,
    dir: Option<&Path>,
    budget: Duration,
) -> Result<ProfileImage, ApiError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(ProfileImage::None);
    };
    if value.starts_with("http://") || value.starts_with("https://") {
        return Ok(ProfileImage::Url(value.to_string()));
    }
    let refuse = |why: &str| {
        Err(ApiError::local_image(format!(
            "profile_image {value:?}: {why}; nothing was sent"
        )))
    };
    let Some(dir) = dir else {
        return refuse(
            "a local image is read only from the folder [fluidtalk] image_dir names, and none is set",
        );
    };
    let relative = Path::new(value);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return refuse("expected a path inside the image folder (no leading /, no ..)");
    }
    match tokio::time::timeout(budget, read_inside(dir, relative)).await {
        Ok(Ok(file)) => Ok(ProfileImage::File(file)),
        Ok(Err(why)) => refuse(&why),
        Err(_) => refuse(&format!("not read within {budget:?}")),
    }
}

async fn read_inside(dir: &Path, relative: &Path) -> Result<ImageFile, String> {
    let root = tokio::fs::canonicalize(dir)
        .await
        .map_err(|e| format!("the image folder {} cannot be used: {e}", dir.display()))?;
    let path = tokio::fs::canonicalize(root.join(relative))
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !path.starts_with(&root) {
        return Err("leads out of the image folder (a symlink?)".into());
    }
    // Opened without blocking, so a FIFO cannot hang the call; then checked on the handle
    // opened, not the name, so a swap after the check changes nothing.
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&path)
        .await
        .map_err(|e| format!("cannot be opened: {e}"))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "is {} bytes, over the {MAX_IMAGE_BYTES}-byte limit",
            meta.len()
        ));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut data)
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    if data.len() as u64 > MAX_IMAGE_BYTES {
        return Err(format!("is over the {MAX_IMAGE_BYTES}-byte limit"));
    }
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image.jpg".into());
    Ok(ImageFile::Bytes { filename, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Duration = Duration::from_secs(5);

    async fn refused(value: &str, dir: Option<&Path>) -> String {
        match resolve(Some(value), dir, BUDGET).await {
            Err(e) => e.to_string(),
            Ok(other) => panic!("{value:?} was accepted: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_url_passes_and_a_file_is_read_only_from_the_image_folder() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("ana.jpg"), b"jpeg").expect("write");
        match resolve(Some("https://cdn/x.jpg"), None, BUDGET).await {
            Ok(ProfileImage::Url(u)) => assert_eq!(u, "https://cdn/x.jpg"),
            other => panic!("{other:?}"),
        }
        match resolve(Some("ana.jpg"), Some(dir.path()), BUDGET).await {
            Ok(ProfileImage::File(ImageFile::Bytes { filename, data })) => {
                assert_eq!(
                    (filename.as_str(), data.as_slice()),
                    ("ana.jpg", &b"jpeg"[..])
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(refused("ana.jpg", None).await.contains("image_dir"));
    }

    #[tokio::test]
    async fn nothing_outside_the_folder_or_not_a_plain_file_is_ever_read() {
        let outside = tempfile::tempdir().expect("dir");
        let secret = outside.path().join("secret.txt");
        std::fs::write(&secret, b"top secret").expect("write");
        let dir = tempfile::tempdir().expect("dir");
        let images = dir.path();
        std::os::unix::fs::symlink(&secret, images.join("link.jpg")).expect("symlink");
        std::fs::create_dir(images.join("sub")).expect("mkdir");
        let fifo = images.join("pipe.jpg");
        let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: mkfifo reads a NUL-terminated path and nothing else.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let big = images.join("big.jpg");
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(MAX_IMAGE_BYTES + 1))
            .expect("big file");
        let abs = secret.to_string_lossy().into_owned();
        for (value, why) in [
            (abs.as_str(), "inside the image folder"),
            ("../secret.txt", "inside the image folder"),
            ("sub/../../x", "inside the image folder"),
            ("link.jpg", "out of the image folder"),
            ("sub", "not a regular file"),
            ("pipe.jpg", "not a regular file"),
            ("big.jpg", "limit"),
            ("missing.jpg", "cannot be read"),
        ] {
            let e = refused(value, Some(images)).await;
            assert!(e.contains(why), "{value}: {e}");
            assert!(!e.contains("top secret"));
        }
    }
}
