//! Manifests on the command line: files, directories (their `.yaml`, `.yml` and `.json`
//! files) and `-` for stdin, parsed completely before anything is sent.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use stead_api::DynamicObject;
use stead_api::yaml::load_objects;

/// One object of a manifest, with where it came from.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) source: String,
    pub(crate) document: usize,
    pub(crate) line: u64,
    pub(crate) object: DynamicObject,
}

impl Item {
    /// `file:line (document N)`, for messages about this object.
    pub(crate) fn location(&self) -> String {
        format!("{}:{} (document {})", self.source, self.line, self.document)
    }
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn files_of(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                files_of(&path, recursive, out)?;
            }
        } else if is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Every object of every source, in order. Any unreadable or malformed source fails the
/// whole load (file:line:column), so nothing is applied from a half-read set.
pub(crate) fn load(sources: &[String], recursive: bool) -> anyhow::Result<Vec<Item>> {
    let mut texts = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the manifest from stdin")?;
            texts.push(("<stdin>".to_owned(), text));
            continue;
        }
        let path = Path::new(source);
        let mut files = Vec::new();
        if path.is_dir() {
            files_of(path, recursive, &mut files)?;
            if files.is_empty() {
                bail!("{source}: no .yaml, .yml or .json files in this directory");
            }
        } else {
            files.push(path.to_path_buf());
        }
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            texts.push((file.display().to_string(), text));
        }
    }
    let mut items = Vec::new();
    for (source, text) in texts {
        for (doc, object) in load_objects(&source, &text)? {
            items.push(Item {
                source: source.clone(),
                document: doc.number,
                line: doc.line,
                object,
            });
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_yields_its_manifests_in_name_order_and_a_bad_file_fails_the_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("b.yaml", "apiVersion: v1\nkind: A\nmetadata: {name: b}\n");
        write(
            "a.yml",
            "apiVersion: v1\nkind: A\nmetadata: {name: a1}\n---\napiVersion: v1\nkind: A\nmetadata: {name: a2}\n",
        );
        write("notes.txt", "not a manifest");
        let source = dir.path().display().to_string();
        let items = load(std::slice::from_ref(&source), false).expect("load");
        let names: Vec<&str> = items.iter().map(|i| i.object.name()).collect();
        assert_eq!(names, ["a1", "a2", "b"]);
        assert!(items[1].location().ends_with("a.yml:5 (document 2)"));

        write("c.yaml", "apiVersion: v1\nkind: [A\n");
        let err = load(&[source], false).err().map(|e| format!("{e:#}"));
        assert!(
            err.as_deref().is_some_and(|e| e.contains("c.yaml:2:")),
            "{err:?}"
        );
    }
}
