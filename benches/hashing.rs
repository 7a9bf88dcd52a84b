//! Piece hashing throughput (SHA-1 over all cores) for piece lengths from 16 KiB to 16 MiB,
//! and SHA-256 of a whole blob, over 64 MiB held in memory.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use torrent_gateway::hash;

const DATA_BYTES: usize = 64 << 20;

fn data() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..DATA_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn piece_hashing(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("piece_hashing");
    group.throughput(Throughput::Bytes(DATA_BYTES as u64));
    group.sample_size(20);
    for shift in [14, 16, 18, 20, 21, 22, 24] {
        let piece = 1usize << shift;
        group.bench_with_input(BenchmarkId::from_parameter(piece), &piece, |b, &piece| {
            b.iter(|| hash::piece_hashes_of(&data, piece))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("blob_sha256");
    group.throughput(Throughput::Bytes(DATA_BYTES as u64));
    group.sample_size(10);
    group.bench_function("64MiB", |b| b.iter(|| hash::sha256(&data)));
    group.finish();
}

criterion_group!(benches, piece_hashing);
criterion_main!(benches);
