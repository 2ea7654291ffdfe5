//! `skiff image import|ls|rm`: the images of a data dir's node agent, through the CRI
//! socket of the agent's own containerd (`<data-dir>/agent/containerd/containerd.sock`).
//! The agent must be running; an archive can also be dropped into
//! `<data-dir>/agent/images/`, which the agent imports at start and within seconds
//! while it runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cri::{Rpc as _, Runtime, v1};

/// How long a CRI call of these commands may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Flags of `skiff image`.
#[derive(Args, Debug, Clone)]
pub struct ImageArgs {
    /// The data dir whose node agent's images these are.
    #[arg(
        long,
        default_value = "/var/lib/skiff",
        env = "SKIFF_DATA_DIR",
        global = true
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand, Debug, Clone)]
enum ImageCommand {
    /// Import image archives (OCI layout, or `docker save` / `podman save` tarballs,
    /// plain or gzip-compressed).
    Import {
        /// The archives.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List images, as `crictl images` does.
    #[command(alias = "list")]
    Ls,
    /// Remove images by name or ID; a name the image shares with other names is
    /// only untagged, as `docker rmi` does.
    #[command(alias = "remove")]
    Rm {
        /// Image names (`busybox`, `docker.io/library/busybox:latest`) or IDs.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Runs `skiff image …`.
pub async fn run(args: ImageArgs) -> anyhow::Result<()> {
    let dir = crate::agent::agent_dir(&args.data_dir);
    let socket = kubelet::containerd_config(&dir).socket();
    match args.command {
        ImageCommand::Import { files } => {
            let runtime = connect(&socket, &args.data_dir, Some(&dir)).await?;
            import(&runtime, &files).await
        }
        ImageCommand::Ls => {
            let runtime = connect(&socket, &args.data_dir, None).await?;
            let images = runtime
                .images()
                .list_images(v1::ListImagesRequest { filter: None })
                .await
                .rpc("ListImages")?
                .images;
            print!("{}", table(&images));
            Ok(())
        }
        ImageCommand::Rm { names } => {
            let runtime = connect(&socket, &args.data_dir, None).await?;
            remove(&runtime, &names).await
        }
    }
}

/// Connects to the agent's containerd, or says in one line what to do instead.
async fn connect(
    socket: &Path,
    data_dir: &Path,
    agent_dir: Option<&Path>,
) -> anyhow::Result<Runtime> {
    let hint = match agent_dir {
        Some(dir) => format!(
            "start `skiff server` (or `skiff agent`) with --data-dir {} first, or copy the archive into {} to have it imported when the agent starts",
            data_dir.display(),
            dir.join("images").display()
        ),
        None => format!(
            "start `skiff server` (or `skiff agent`) with --data-dir {} first",
            data_dir.display()
        ),
    };
    if !socket.exists() {
        bail!(
            "the node agent's containerd is not running (no socket {}): {hint}",
            socket.display()
        );
    }
    let answered = async {
        let runtime = Runtime::connect(socket, TIMEOUT).await?;
        runtime.version().await?;
        Ok::<_, cri::Error>(runtime)
    };
    match tokio::time::timeout(Duration::from_secs(5), answered).await {
        Ok(Ok(runtime)) => Ok(runtime),
        Ok(Err(e)) => bail!(
            "the node agent's containerd is not running ({}): {hint}",
            e.to_string().replace('\n', " ")
        ),
        Err(_) => bail!(
            "the node agent's containerd does not answer on {}: {hint}",
            socket.display()
        ),
    }
}

async fn import(runtime: &Runtime, files: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        let result = async {
            let path = std::fs::canonicalize(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if !path.is_file() {
                bail!("{} is not a file", file.display());
            }
            cri::image::import(runtime.socket(), &path)
                .await
                .map_err(anyhow::Error::from)
        }
        .await;
        match result {
            Ok(names) if names.is_empty() => println!("imported {}", file.display()),
            Ok(names) => {
                for name in names {
                    println!("imported {name}");
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} archive(s) could not be imported",
            files.len()
        );
    }
    Ok(())
}

async fn remove(runtime: &Runtime, names: &[String]) -> anyhow::Result<()> {
    let mut failed = 0;
    for name in names {
        let status = runtime
            .images()
            .image_status(v1::ImageStatusRequest {
                image: Some(v1::ImageSpec {
                    image: name.clone(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .rpc("ImageStatus")?;
        let Some(image) = status.image else {
            eprintln!("error: no such image: {name}");
            failed += 1;
            continue;
        };
        if image.repo_tags.iter().any(|t| t == cri::image::PAUSE_IMAGE) {
            eprintln!("error: {name} is the pause image every pod sandbox runs; it is not removed");
            failed += 1;
            continue;
        }
        // One of several names: only that name goes, as `docker rmi` does.
        let full = cri::image::full_name(name).unwrap_or_else(|_| name.clone());
        if image.repo_tags.len() > 1
            && let Some(tag) = image.repo_tags.iter().find(|t| **t == full || *t == name)
        {
            cri::image::untag(runtime.socket(), tag).await?;
            println!("Untagged: {tag}");
            continue;
        }
        runtime
            .images()
            .remove_image(v1::RemoveImageRequest {
                image: Some(v1::ImageSpec {
                    image: image.id.clone(),
                    ..Default::default()
                }),
            })
            .await
            .rpc("RemoveImage")?;
        if image.repo_tags.is_empty() {
            println!("Deleted: {}", image.id);
        }
        for tag in &image.repo_tags {
            println!("Deleted: {tag}");
        }
    }
    if failed > 0 {
        bail!("{failed} of {} image(s) not removed", names.len());
    }
    Ok(())
}

/// `crictl images`' table: IMAGE, TAG, IMAGE ID (13 hex digits), SIZE; one row per
/// tag, `<none>` where an image has no tag.
fn table(images: &[v1::Image]) -> String {
    let mut rows: Vec<[String; 4]> = Vec::new();
    for image in images {
        let id: String = image
            .id
            .trim_start_matches("sha256:")
            .chars()
            .take(13)
            .collect();
        let size = human_size(image.size);
        let mut tags: Vec<(String, String)> =
            image.repo_tags.iter().map(|t| split_tag(t)).collect();
        if tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map_or("<none>", |(repo, _)| repo);
            tags.push((repo.to_owned(), "<none>".to_owned()));
        }
        for (repo, tag) in tags {
            rows.push([repo, tag, id.clone(), size.clone()]);
        }
    }
    rows.sort();
    let header = ["IMAGE", "TAG", "IMAGE ID", "SIZE"].map(str::to_owned);
    let all: Vec<&[String; 4]> = std::iter::once(&header).chain(&rows).collect();
    // tabwriter as crictl sets it up: cells at least 20 wide, 3 spaces of padding.
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            all.iter()
                .map(|r| r[i].len() + 3)
                .max()
                .unwrap_or(0)
                .max(20)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        for (i, cell) in row.iter().enumerate() {
            if i < 3 {
                out.push_str(&format!("{cell:<width$}", width = widths[i]));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// `repo` and `tag` of `repo:tag`.
fn split_tag(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "<none>".to_owned()),
    }
}

/// A size as Docker's `HumanSizeWithPrecision(size, 3)` prints it: decimal units,
/// three significant digits (`2.22MB`, `740kB`, `0B`).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let integer_digits = if value < 10.0 {
        1
    } else if value < 100.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.*}", 3 - integer_digits);
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    };
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_crictl_prints_them() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(740_000), "740kB");
        assert_eq!(human_size(2_216_000), "2.22MB");
        assert_eq!(human_size(2_200_000), "2.2MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn the_table_has_a_row_per_tag() {
        let images = [
            v1::Image {
                id: "sha256:0123456789abcdef0123".into(),
                repo_tags: vec![
                    "docker.io/library/busybox:latest".into(),
                    "127.0.0.1:5000/test/busybox:1".into(),
                ],
                size: 2_216_000,
                ..Default::default()
            },
            v1::Image {
                id: "sha256:fedcba9876543210".into(),
                repo_digests: vec!["quay.io/a/b@sha256:00".into()],
                size: 1_000,
                ..Default::default()
            },
        ];
        let text = table(&images);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("IMAGE "), "{text}");
        let columns: Vec<Vec<&str>> = lines
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(columns[0], ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]);
        assert_eq!(
            columns[1],
            [
                "127.0.0.1:5000/test/busybox",
                "1",
                "0123456789abc",
                "2.22MB"
            ]
        );
        assert_eq!(
            columns[2],
            [
                "docker.io/library/busybox",
                "latest",
                "0123456789abc",
                "2.22MB"
            ]
        );
        assert_eq!(
            columns[3],
            ["quay.io/a/b", "<none>", "fedcba9876543", "1kB"]
        );
        // Columns line up: the first is as wide as its longest cell plus 3.
        assert_eq!(lines[0].find("TAG"), Some(30), "{text}");
        assert_eq!(&lines[1][30..32], "1 ", "{text}");
    }
}
