use super::format::Error;
use super::*;

/// Deterministic records with keys, values, headers (some null) and increasing timestamps.
pub fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            offset: 1000 + i as i64,
            timestamp: 1_767_225_600_000 + i as i64 * 7,
            key: (i % 5 != 0).then(|| format!("key-{}", i % 97).into_bytes()),
            value: (i % 11 != 0).then(|| {
                format!("{{\"order\":{i},\"amount\":{},\"note\":\"{}\"}}", i * 13 % 1000, "x".repeat(i % 40))
                    .into_bytes()
            }),
            headers: if i % 3 == 0 {
                vec![("trace-id".into(), Some(format!("{i:016x}").into_bytes())), ("tombstone".into(), None)]
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn write(records: &[Record], c: Compression) -> (Vec<u8>, SegmentSummary) {
    let mut w = SegmentWriter::new(Vec::new(), c, 4096).unwrap();
    for r in records {
        w.push(r).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn every_codec_round_trips_records_exactly() {
    let rs = records(2000);
    for c in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
        let (bytes, summary) = write(&rs, c);
        assert_eq!(summary.records, 2000);
        assert_eq!((summary.first_offset, summary.last_offset), (1000, 2999));
        assert_eq!(summary.stored_bytes, bytes.len() as u64, "{c:?}");
        assert!(summary.frames > 10, "{c:?}: {summary:?}");
        if c != Compression::None {
            assert!(summary.stored_bytes < summary.raw_bytes, "{c:?} compresses: {summary:?}");
        }
        let back = SegmentReader::new(&bytes[..]).unwrap().read_all().unwrap();
        assert_eq!(back, rs, "{c:?}");
    }
}

#[test]
fn a_flipped_byte_is_found_and_named() {
    let (mut bytes, _) = write(&records(500), Compression::Lz4);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let err = SegmentReader::new(&bytes[..]).unwrap().read_all().unwrap_err();
    assert!(matches!(err, Error::Checksum { .. } | Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().starts_with("frame "), "the error names the frame: {err}");
}

#[test]
fn every_single_byte_flip_is_detected() {
    let (bytes, _) = write(&records(60), Compression::Snappy);
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x40;
        let read = SegmentReader::new(&b[..]).and_then(SegmentReader::read_all);
        assert!(read.is_err(), "flip at byte {i} of {} went unnoticed", bytes.len());
    }
}

#[test]
fn a_truncated_segment_is_refused() {
    let (bytes, _) = write(&records(500), Compression::Zstd);
    for cut in [bytes.len() - 1, bytes.len() - 40, bytes.len() / 2, 8] {
        let err = SegmentReader::new(&bytes[..cut]).unwrap().read_all().unwrap_err();
        assert!(matches!(err, Error::Truncated { .. } | Error::Trailer { .. }), "cut at {cut}: {err}");
    }
    assert!(matches!(SegmentReader::new(&bytes[..3]).unwrap_err(), Error::Magic));
}

#[test]
fn a_frame_dropped_from_the_middle_is_refused_by_the_trailer() {
    let rs = records(300);
    let mut w = SegmentWriter::new(Vec::new(), Compression::None, 1 << 20).unwrap();
    for r in &rs[..100] {
        w.push(r).unwrap();
    }
    let (first, _) = w.finish().unwrap();
    // A segment whose trailer claims more than its frames hold.
    let (full, _) = write(&rs, Compression::None);
    let trailer = &full[full.len() - 40..];
    let mut forged = first[..first.len() - 40].to_vec();
    forged.extend_from_slice(trailer);
    let err = SegmentReader::new(&forged[..]).unwrap().read_all().unwrap_err();
    assert!(matches!(err, Error::Trailer { .. }), "{err}");
}

#[test]
fn storage_writes_atomically_and_lists_only_finished_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::new(dir.path());
    s.put("b1/manifest.json", &mut |w| w.write_all(b"{}")).unwrap();
    let failed = s.put("b1/seg-0", &mut |w| {
        w.write_all(b"half")?;
        Err(std::io::Error::other("interrupted"))
    });
    assert!(failed.is_err());
    assert!(!s.exists("b1/seg-0"), "a failed write leaves nothing behind");
    assert_eq!(s.list("b1").unwrap(), vec!["manifest.json".to_owned()]);
    let mut text = String::new();
    s.get("b1/manifest.json").unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "{}");
    assert!(s.put("../escape", &mut |_| Ok(())).is_err());
    assert!(s.list("missing").unwrap().is_empty());
}

use std::io::Read;
