//! Unit tests of the content store: ingest, chunking, reads and removal.

use super::*;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn read_all(
    store: &ContentStore,
    up_sha: &str,
    storage: Storage,
    size: u64,
    r: Range<u64>,
) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .read(up_sha, storage, size, r)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn blob_and_chunked_ingest_read_and_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path(), 16_384, 50_000).unwrap();
    for (len, declared, kind) in [
        (1_000usize, true, Storage::Blob),
        (100_000, true, Storage::Chunked),
        (70_000, false, Storage::Chunked),
        (0, true, Storage::Blob),
    ] {
        let bytes = data(len);
        let up = store
            .ingest(&mut &bytes[..], declared.then_some(len as u64), 1 << 30)
            .unwrap();
        assert_eq!(up.storage, kind, "{len}");
        assert_eq!(up.sha256, hex::encode(&crate::hash::sha256(&bytes)));
        assert_eq!(up.pieces, crate::hash::piece_hashes_of(&bytes, 16_384));
        let (sha, size) = (up.sha256.clone(), up.size);
        store.commit(up).unwrap();
        assert_eq!(read_all(&store, &sha, kind, size, 0..size), bytes);
        if size > 20_000 {
            // Across the first chunk boundary.
            assert_eq!(
                read_all(&store, &sha, kind, size, 16_000..20_000),
                &bytes[16_000..20_000]
            );
        }
    }
    // An orphan blob and a leftover tmp entry are swept; the known ones stay.
    let orphan = store.blob_path(&"ab".repeat(32));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"x").unwrap();
    fs::write(dir.path().join("tmp/up-1-1"), b"partial").unwrap();
    fs::write(dir.path().join("blobs/stray"), b"not a directory").unwrap();
    let (removed, missing) = store.sweep(&[]).unwrap();
    assert_eq!(
        removed, 7,
        "4 unreferenced uploads, orphan, tmp file, stray file"
    );
    assert!(missing.is_empty());
    assert!(!orphan.exists());
}

/// This process's mappings of files under `dir`.
fn mappings_under(dir: &Path) -> usize {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let dir = dir.to_string_lossy();
    maps.lines().filter(|l| l.contains(dir.as_ref())).count()
}

/// A writer that takes at most `cap` bytes a call, or refuses with WouldBlock.
struct Slow {
    out: Vec<u8>,
    cap: usize,
    block: bool,
}

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.cap);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_response_maps_one_chunk_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path(), 16_384, 50_000).unwrap();
    let bytes = data(16_384 * 20 + 100);
    let up = store
        .ingest(&mut &bytes[..], Some(bytes.len() as u64), 1 << 30)
        .unwrap();
    assert_eq!(up.storage, Storage::Chunked);
    let (sha, size) = (up.sha256.clone(), up.size);
    store.commit(up).unwrap();
    let chunks = store.chunk_dir(&sha);
    assert_eq!(mappings_under(&chunks), 0);
    let mut body = store.read(&sha, Storage::Chunked, size, 0..size).unwrap();
    assert_eq!(mappings_under(&chunks), 1, "only the first chunk is mapped");
    assert_eq!(body.len(), size);
    // WouldBlock consumes nothing.
    let mut w = Slow {
        out: Vec::new(),
        cap: 5000,
        block: true,
    };
    assert_eq!(
        body.write_some(&mut w).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(body.len(), size);
    w.block = false;
    let mut calls = 0;
    loop {
        let n = body.write_some(&mut w).unwrap();
        assert!(mappings_under(&chunks) <= 1, "after {calls} writes");
        if n == 0 {
            break;
        }
        calls += 1;
        assert!(calls < 10_000);
    }
    assert_eq!(w.out, bytes);
    assert!(body.is_empty());
    assert_eq!(mappings_under(&chunks), 0, "sent chunks are unmapped");
    // A range in the middle, through Read and write_to.
    let mut body = store
        .read(&sha, Storage::Chunked, size, 20_000..200_000)
        .unwrap();
    let mut first = vec![0u8; 1000];
    body.read_exact(&mut first).unwrap();
    let mut rest = Vec::new();
    body.write_to(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first, &bytes[20_000..200_000]);
    assert_eq!(mappings_under(&chunks), 0);
    // A missing chunk fails the read up front, not halfway through the response.
    fs::remove_file(chunks.join("7")).unwrap();
    assert!(store.read(&sha, Storage::Chunked, size, 0..size).is_err());
}

#[test]
fn every_directory_made_for_a_commit_is_synced() {
    use crate::store::dirs::tests::take_synced;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    take_synced();
    let store = ContentStore::open(&root, 16_384, 50_000).unwrap();
    let synced = take_synced();
    for d in [tmp.path().to_path_buf(), root.clone()] {
        assert!(synced.contains(&d), "{}: {synced:?}", d.display());
    }
    let bytes = data(1000);
    let up = store.ingest(&mut &bytes[..], Some(1000), 1 << 20).unwrap();
    let path = store.blob_path(&up.sha256);
    store.commit(up).unwrap();
    let cd = path.parent().unwrap().to_path_buf();
    let ab = cd.parent().unwrap().to_path_buf();
    let synced = take_synced();
    // blobs/ holds the new ab/, ab/ the new cd/, cd/ the blob.
    for d in [root.join("blobs"), ab, cd] {
        assert!(synced.contains(&d), "{}: {synced:?}", d.display());
    }
    let big = data(60_000);
    let up = store.ingest(&mut &big[..], Some(60_000), 1 << 20).unwrap();
    assert_eq!(up.storage, Storage::Chunked);
    store.commit(up).unwrap();
    assert!(take_synced().contains(&root.join("chunks")));
}

#[test]
fn short_long_and_oversized_bodies_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path(), 16_384, 50_000).unwrap();
    let bytes = data(1000);
    let e = store
        .ingest(&mut &bytes[..], Some(2000), 1 << 20)
        .unwrap_err();
    assert!(matches!(
        e,
        IngestError::Truncated {
            got: 1000,
            expected: 2000
        }
    ));
    let e = store
        .ingest(&mut &bytes[..], Some(500), 1 << 20)
        .unwrap_err();
    assert!(matches!(e, IngestError::TooLarge));
    let e = store.ingest(&mut &bytes[..], None, 999).unwrap_err();
    assert!(matches!(e, IngestError::TooLarge));
    let e = store.ingest(&mut &bytes[..], Some(5000), 999).unwrap_err();
    assert!(matches!(e, IngestError::TooLarge));
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}
