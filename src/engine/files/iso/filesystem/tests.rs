//! Helpers shared by the ISO reader's tests (some by kernel.rs's too), and tests of whole images.

use super::*;
use std::process::Command;

/// Build `out` from `tree` with `xorriso -as mkisofs OPTIONS`. The tests need a real tool's
/// images, so a missing xorriso fails them (apt-get install xorriso) rather than skipping.
pub(crate) fn build_iso(tree: &Path, options: &[&str], out: &Path) {
    let output = Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-o"])
        .arg(out)
        .args(options)
        .arg(tree)
        .output()
        .expect("these tests build ISOs with xorriso: apt-get install xorriso");
    assert!(
        output.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Create `files` (path relative to `root`, content) with their directories.
pub(crate) fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Bytes that differ from file to file and from block to block.
pub(super) fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

pub(super) struct Sample {
    dir: tempfile::TempDir,
    files: Vec<(String, Vec<u8>)>,
}

/// A small installer-like tree: a kernel, an initrd over many sectors, an empty file, a
/// name with capitals and spaces.
pub(super) fn sample_tree() -> Sample {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        ("vmlinuz".to_string(), pattern(5000, 1)),
        ("install.amd/initrd.gz".to_string(), pattern(70_001, 2)),
        ("install.amd/empty".to_string(), Vec::new()),
        ("boot/vmlinuz-lts".to_string(), pattern(2048, 3)),
        ("docs/Mixed Case Name.txt".to_string(), b"hello".to_vec()),
    ];
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    write_tree(&dir.path().join("tree"), &refs);
    Sample { dir, files }
}

pub(super) fn iso_of(sample: &Sample, options: &[&str]) -> IsoFilesystem {
    let out = sample.dir.path().join(format!("{}.iso", options.join("")));
    build_iso(&sample.dir.path().join("tree"), options, &out);
    IsoFilesystem::open(&out).unwrap()
}

/// Every file of the sample is found, listed and extracted byte for byte.
pub(super) fn assert_sample_reads_back(iso: &IsoFilesystem, sample: &Sample) {
    let out = sample.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    for (path, content) in &sample.files {
        let entry = iso
            .lookup(path)
            .unwrap()
            .unwrap_or_else(|| panic!("{path} not found"));
        assert!(!entry.is_dir);
        assert_eq!(entry.size, content.len() as u64, "{path}");
        let dest = out.join(path.replace('/', "_"));
        iso.extract(&entry, &dest).unwrap();
        assert_eq!(&std::fs::read(&dest).unwrap(), content, "{path}");
    }
    let mut root: Vec<(String, bool)> = iso
        .list("/")
        .unwrap()
        .into_iter()
        .map(|e| (e.name.to_ascii_lowercase(), e.is_dir))
        .collect();
    root.sort();
    let expected = [
        ("boot", true),
        ("docs", true),
        ("install.amd", true),
        ("vmlinuz", false),
    ];
    assert_eq!(root, expected.map(|(n, d)| (n.to_string(), d)));
    assert_eq!(iso.list("/install.amd").unwrap().len(), 2);
    assert!(iso.lookup("/install.amd/missing").unwrap().is_none());
    assert!(iso.lookup("/vmlinuz/below-a-file").unwrap().is_none());
    assert!(iso.lookup("/install.amd").unwrap().unwrap().is_dir);
    // `.` and `..` walk the tree like a path on disk.
    let again = iso.lookup("/install.amd/./../vmlinuz").unwrap().unwrap();
    assert_eq!(again.size, 5000);
}

#[test]
fn rock_ridge_wins_over_joliet_and_volume_id_is_read() {
    let sample = sample_tree();
    let iso = iso_of(&sample, &["-R", "-J", "-V", "Fedora-S-dvd-x86_64-40"]);
    assert_eq!(iso.names(), NameSource::RockRidge);
    assert_eq!(iso.volume_id(), "Fedora-S-dvd-x86_64-40");
    assert_sample_reads_back(&iso, &sample);
}

/// Every entry below `dir` (depth and count bounded: the image may be garbage).
fn walk(
    iso: &IsoFilesystem,
    dir: &IsoEntry,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, IsoEntry)>,
) -> Result<(), IsoReadError> {
    if depth > 20 || out.len() > 5000 {
        return Ok(());
    }
    for child in iso.children(dir)? {
        let path = format!("{prefix}/{}", child.name);
        out.push((path.clone(), child.clone()));
        if child.is_dir && child.symlink.is_none() {
            walk(iso, &child, &path, depth + 1, out)?;
        }
    }
    Ok(())
}

#[test]
fn deep_trees_and_directories_of_many_sectors() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let deep = "d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/d11/d12/deep.txt";
    let mut files: Vec<(String, Vec<u8>)> = vec![(deep.to_string(), b"bottom".to_vec())];
    for n in 0..300 {
        files.push((
            format!("many/file-number-{n:03}.txt"),
            format!("content {n}").into_bytes(),
        ));
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    write_tree(&tree, &refs);
    for (options, source) in [
        (&["-R"][..], NameSource::RockRidge),
        (&["--norock", "-J"][..], NameSource::Joliet),
    ] {
        let out = dir.path().join(format!("deep{}.iso", options.join("")));
        build_iso(&tree, options, &out);
        let iso = IsoFilesystem::open(&out).unwrap();
        assert_eq!(iso.names(), source);
        let many = iso.lookup("/many").unwrap().unwrap();
        assert!(
            many.size > 4 * SECTOR,
            "the directory spans several sectors: {}",
            many.size
        );
        let listed = iso.list("/many").unwrap();
        assert_eq!(listed.len(), 300, "{options:?}");
        for (path, content) in &files {
            let entry = iso
                .lookup(path)
                .unwrap()
                .unwrap_or_else(|| panic!("{path} in {options:?}"));
            assert_eq!(&iso.read(&entry, 1000).unwrap(), content, "{path}");
        }
        let mut everything = Vec::new();
        walk(&iso, iso.root(), "", 0, &mut everything).unwrap();
        assert_eq!(everything.iter().filter(|(_, e)| !e.is_dir).count(), 301);
    }
}

pub(super) fn set_both_endian(field: &mut [u8], value: u32) {
    field[..4].copy_from_slice(&value.to_le_bytes());
    field[4..8].copy_from_slice(&value.to_be_bytes());
}

/// Open, walk and extract everything small; the errors met (a panic fails the test).
fn read_everything(path: &Path, out: &Path) -> Vec<IsoReadError> {
    let iso = match IsoFilesystem::open(path) {
        Ok(iso) => iso,
        Err(error) => return vec![error],
    };
    let mut errors = Vec::new();
    let mut entries = Vec::new();
    if let Err(error) = walk(&iso, iso.root(), "", 0, &mut entries) {
        errors.push(error);
    }
    for (index, (_, entry)) in entries.iter().enumerate() {
        if !entry.is_dir && entry.size <= 1 << 20 {
            errors.extend(iso.extract(entry, &out.join(index.to_string())).err());
        }
    }
    errors
}

fn sample_image() -> (Sample, PathBuf) {
    let sample = sample_tree();
    let path = sample.dir.path().join("good.iso");
    build_iso(&sample.dir.path().join("tree"), &["-R", "-J"], &path);
    (sample, path)
}

#[test]
fn cut_short_images_are_errors_not_panics() {
    let (sample, good) = sample_image();
    let image = std::fs::read(&good).unwrap();
    let out = sample.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    assert!(read_everything(&good, &out).is_empty());
    let iso = IsoFilesystem::open(&good).unwrap();
    let initrd = iso.lookup("/install.amd/initrd.gz").unwrap().unwrap();
    let data_end = block_offset(initrd.extent) + initrd.size;
    let cut_path = sample.dir.path().join("cut.iso");
    let mut cuts: Vec<usize> = (0..image.len()).step_by(SECTOR as usize / 2).collect();
    cuts.extend([1, 100, 16 * 2048 + 1, data_end as usize - 1]);
    for cut in cuts {
        std::fs::write(&cut_path, &image[..cut]).unwrap();
        let errors = read_everything(&cut_path, &out);
        if cut < 17 * SECTOR as usize {
            assert!(
                matches!(errors[..], [IsoReadError::NotIso(_)]),
                "{cut}: {errors:?}"
            );
        } else if (cut as u64) < data_end {
            assert!(!errors.is_empty(), "cut at {cut} went unnoticed");
        }
    }
    assert_no_temporary_files(&out);
}

fn assert_no_temporary_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".kiln-"), "{name} left behind");
    }
}

#[test]
fn garbled_images_are_errors_not_panics() {
    let (sample, good) = sample_image();
    let image = std::fs::read(&good).unwrap();
    let out = sample.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Descriptors, path tables and directories lie before the first file's data.
    let iso = IsoFilesystem::open(&good).unwrap();
    let mut entries = Vec::new();
    walk(&iso, iso.root(), "", 0, &mut entries).unwrap();
    let metadata_end = entries
        .iter()
        .filter(|(_, e)| !e.is_dir && e.size > 0)
        .map(|(_, e)| block_offset(e.extent))
        .min()
        .unwrap() as usize;
    let bad = sample.dir.path().join("bad.iso");
    let mut random = pattern(4 * 2000 * 8, 99).into_iter();
    let mut next = || u32::from_le_bytes([0; 4].map(|_| random.next().unwrap()));
    let mut errors = 0;
    for _ in 0..600 {
        let mut garbled = image.clone();
        for _ in 0..(next() % 6 + 1) {
            let at = 16 * SECTOR as usize + next() as usize % (metadata_end - 16 * SECTOR as usize);
            garbled[at] = next() as u8;
        }
        std::fs::write(&bad, &garbled).unwrap();
        errors += read_everything(&bad, &out).len();
    }
    assert!(errors > 0, "some garbling must be noticed");
    assert_no_temporary_files(&out);
}

/// A hand-made image of `sectors` zeroed sectors, read as Rock Ridge.
pub(super) fn blank_image(
    sectors: usize,
    patch: impl FnOnce(&mut [u8]),
) -> (tempfile::NamedTempFile, IsoFilesystem) {
    let mut bytes = vec![0u8; sectors * SECTOR as usize];
    patch(&mut bytes);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let iso = IsoFilesystem {
        path: file.path().to_path_buf(),
        file: File::open(file.path()).unwrap(),
        len: bytes.len() as u64,
        volume_id: String::new(),
        names: NameSource::RockRidge,
        susp_skip: 0,
        root: IsoEntry::placeholder(),
    };
    (file, iso)
}

#[test]
fn what_is_not_an_iso_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.iso");
    std::fs::write(&text, vec![b'x'; 40 * SECTOR as usize]).unwrap();
    assert!(matches!(
        IsoFilesystem::open(&text),
        Err(IsoReadError::NotIso(_))
    ));
    assert!(matches!(
        IsoFilesystem::open(dir.path()),
        Err(IsoReadError::NotAFile(_))
    ));
    let missing = IsoFilesystem::open(&dir.path().join("gone.iso")).unwrap_err();
    assert!(missing.to_string().contains("gone.iso"), "{missing}");

    let (sample, good) = sample_image();
    let mut image = std::fs::read(&good).unwrap();
    image[16 * SECTOR as usize + 128..][..2].copy_from_slice(&512u16.to_le_bytes());
    let odd = sample.dir.path().join("odd.iso");
    std::fs::write(&odd, &image).unwrap();
    let error = IsoFilesystem::open(&odd).unwrap_err();
    assert!(
        matches!(error, IsoReadError::BlockSize { size: 512, .. }),
        "{error}"
    );

    let iso = IsoFilesystem::open(&good).unwrap();
    assert!(matches!(
        iso.list("/nowhere"),
        Err(IsoReadError::NotFound { .. })
    ));
    assert!(matches!(
        iso.list("/vmlinuz"),
        Err(IsoReadError::NotADirectory { .. })
    ));
    let kernel = iso.lookup("/vmlinuz").unwrap().unwrap();
    assert!(matches!(
        iso.read(&kernel, 10),
        Err(IsoReadError::TooLarge { .. })
    ));
    let into_missing_dir = iso.extract(&kernel, &dir.path().join("no/such/dir/vmlinuz"));
    assert!(matches!(into_missing_dir, Err(IsoReadError::Write { .. })));
}
