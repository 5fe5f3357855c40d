use std::collections::BTreeMap;
use std::io::Read;

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

fn manifest(partitions: &[(i32, i64, i64)]) -> Manifest {
    Manifest {
        id: "prod-orders-1".into(),
        cluster: "prod".into(),
        topic: "orders".into(),
        created_at: crate::time::Timestamp::from_millis(1_767_225_600_000),
        completed_at: None,
        compression: Compression::Lz4,
        topic_configs: BTreeMap::from([("retention.ms".into(), "604800000".into())]),
        consumer_offsets: BTreeMap::from([("billing".into(), BTreeMap::from([(0, 1500)]))]),
        partitions: partitions
            .iter()
            .map(|(p, start, end)| {
                (*p, PartitionBackup { start_offset: *start, end_offset: *end, segments: Vec::new() })
            })
            .collect(),
    }
}

#[test]
fn an_interrupted_backup_resumes_where_it_stopped_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::new(dir.path());
    let rs = records(3000);
    let mut m = manifest(&[(0, 1000, 4000)]);
    m.save(&s).unwrap();
    m.append(&s, 0, &rs[..1000]).unwrap();
    m.append(&s, 0, &rs[1000..1500]).unwrap();
    // The process dies here; a new one reads the manifest back and goes on.
    let mut resumed = Manifest::load(&s, "prod-orders-1").unwrap();
    assert_eq!(resumed, m);
    assert_eq!(resumed.partitions[&0].next_offset(), 2500);
    assert!(!resumed.partitions[&0].done());
    let again = resumed.append(&s, 0, &rs[1400..1600]).unwrap_err();
    assert!(again.to_string().contains("before the partition's next offset 2500"), "{again}");
    resumed.append(&s, 0, &rs[1500..]).unwrap();
    assert!(resumed.partitions[&0].done());
    assert_eq!(resumed.verify(&s).unwrap(), BTreeMap::from([(0, 3000)]));
    assert_eq!(resumed.read_partition(&s, 0).unwrap(), rs, "record for record");
    assert_eq!(Manifest::list(&s).unwrap().len(), 1);
}

#[test]
fn verify_names_the_damaged_segment() {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::new(dir.path());
    let rs = records(2000);
    let mut m = manifest(&[(0, 1000, 3000)]);
    m.append(&s, 0, &rs[..1000]).unwrap();
    m.append(&s, 0, &rs[1000..]).unwrap();
    let second = dir.path().join(&m.partitions[&0].segments[1].file);
    let good = std::fs::read(&second).unwrap();

    let mut flipped = good.clone();
    flipped[good.len() / 3] ^= 0x08;
    std::fs::write(&second, &flipped).unwrap();
    let err = m.verify(&s).unwrap_err().to_string();
    assert!(err.contains("p00000-00000000000000002000.seg"), "{err}");
    assert!(m.read_partition(&s, 0).is_err(), "restore reads through the same checks");

    std::fs::write(&second, &good[..good.len() - 10]).unwrap();
    assert!(m.verify(&s).is_err());

    // A valid segment that is not the one the manifest recorded.
    let other = tempfile::tempdir().unwrap();
    let mut decoy = manifest(&[(0, 1000, 3000)]);
    decoy.append(&FsStorage::new(other.path()), 0, &records(1500)[1000..]).unwrap();
    let decoy_file = other.path().join(&decoy.partitions[&0].segments[0].file);
    std::fs::copy(decoy_file, &second).unwrap();
    let err = m.verify(&s).unwrap_err().to_string();
    assert!(err.contains("does not match the manifest"), "{err}");

    std::fs::remove_file(&second).unwrap();
    assert!(m.verify(&s).unwrap_err().to_string().contains("storage"));
    std::fs::write(&second, &good).unwrap();
    assert_eq!(m.verify(&s).unwrap()[&0], 2000);
}
