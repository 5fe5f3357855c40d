//! The backup write and read paths without a broker: records encoded, compressed and
//! checksummed into segment frames, and read back (checksums verified, decompressed, decoded).
//! Throughput is in raw record bytes per second, one core.

use std::hint::black_box;

use autopilot::backup::{Compression, Record, SegmentReader, SegmentWriter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// 100,000 records of about 300 bytes: keys, JSON-like values, a header on every third.
fn records() -> Vec<Record> {
    (0..100_000)
        .map(|i: i64| Record {
            offset: i,
            timestamp: 1_767_225_600_000 + i,
            key: Some(format!("customer-{:06}", i % 50_000).into_bytes()),
            value: Some(
                format!(
                    "{{\"order\":{i},\"customer\":\"customer-{:06}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"items\":[{{\"sku\":\"SKU-{:05}\",\"qty\":{}}},{{\"sku\":\"SKU-{:05}\",\"qty\":1}}],\"status\":\"{}\",\"created\":\"2026-11-21T10:{:02}:{:02}Z\"}}",
                    i % 50_000,
                    i * 37 % 10_000,
                    i % 100,
                    i * 7 % 20_000,
                    i % 5 + 1,
                    i * 11 % 20_000,
                    ["new", "paid", "shipped", "delivered"][(i % 4) as usize],
                    i % 60,
                    i * 7 % 60,
                )
                .into_bytes(),
            ),
            headers: if i % 3 == 0 { vec![("trace-id".into(), Some(format!("{i:032x}").into_bytes()))] } else { Vec::new() },
        })
        .collect()
}

fn write(records: &[Record], c: Compression) -> Vec<u8> {
    let mut w = SegmentWriter::new(Vec::with_capacity(64 << 20), c, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
    for r in records {
        w.push(r).unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}")).0
}

#[allow(clippy::print_stderr)]
fn bench(c: &mut Criterion) {
    let rs = records();
    let mut group = c.benchmark_group("backup_codec");
    group.sample_size(10);
    for codec in [Compression::Lz4, Compression::Zstd, Compression::Snappy, Compression::Gzip, Compression::None] {
        let mut w = SegmentWriter::new(Vec::new(), codec, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        for r in &rs {
            w.push(r).unwrap_or_else(|e| panic!("{e}"));
        }
        let (bytes, summary) = w.finish().unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{codec:?}: {} raw bytes -> {} stored (ratio {:.2})",
            summary.raw_bytes,
            summary.stored_bytes,
            summary.raw_bytes as f64 / summary.stored_bytes as f64
        );
        group.throughput(Throughput::Bytes(summary.raw_bytes));
        group.bench_with_input(BenchmarkId::new("write", format!("{codec:?}")), &rs, |b, rs| {
            b.iter(|| write(black_box(rs), codec))
        });
        group.bench_with_input(BenchmarkId::new("read", format!("{codec:?}")), &bytes, |b, bytes| {
            b.iter(|| SegmentReader::new(black_box(&bytes[..])).and_then(SegmentReader::read_all).map(|r| r.len()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
