//! The segment format. A segment holds records of one partition, in offset order:
//!
//! ```text
//! header   "KAPB" | version u16 | compression u8
//! frame*   payload_len u32 | record_count u32 | crc32c(payload) u32 | payload
//! trailer  "KAPE" | frames u64 | records u64 | first_offset i64 | last_offset i64 | crc32c(all frame crcs) u32
//! ```
//!
//! All integers big-endian. A payload is the frame's records, each encoded as
//! `offset i64 | timestamp i64 | key | value | header_count u32 | (name, value)*` where a byte
//! string is `len i32 (-1 for null) | bytes`, compressed as a whole with the segment's codec.
//! Every frame's CRC is checked before its records are used, and the trailer's checksum covers
//! every frame, so a flipped byte or a truncated file is found before anything is restored.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"KAPB";
const END: &[u8; 4] = b"KAPE";
const VERSION: u16 = 1;
/// Longest frame payload accepted when reading (a corrupt length must not allocate gigabytes).
const MAX_FRAME: u32 = 256 << 20;

/// One Kafka record, as backed up and restored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// How frames are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    fn compress(self, raw: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(raw.to_vec()),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(raw)?;
                e.finish()
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(raw).map_err(std::io::Error::other),
            Compression::Lz4 => lz4::block::compress(raw, Some(lz4::block::CompressionMode::FAST(1)), true),
            Compression::Zstd => zstd::bulk::compress(raw, 1),
        }
    }

    fn decompress(self, data: &[u8], expected_max: usize) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data.to_vec()),
            Compression::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(data).take(expected_max as u64).read_to_end(&mut out)?;
                Ok(out)
            }
            Compression::Snappy => snap::raw::Decoder::new().decompress_vec(data).map_err(std::io::Error::other),
            Compression::Lz4 => lz4::block::decompress(data, None),
            Compression::Zstd => zstd::bulk::decompress(data, expected_max),
        }
    }
}

/// What a finished segment holds; kept in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub frames: u64,
    pub records: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    pub first_timestamp: i64,
    pub last_timestamp: i64,
    /// Raw (uncompressed) record bytes and bytes written.
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    /// CRC32C over the CRCs of all frames.
    pub crc32c: u32,
}

/// Why a segment cannot be read; names the frame where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("segment I/O")]
    Io(#[from] std::io::Error),
    #[error("not a backup segment (bad magic)")]
    Magic,
    #[error("unsupported segment version {0}")]
    Version(u16),
    #[error("unknown compression code {0}")]
    Codec(u8),
    #[error("frame {frame}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { frame: u64, stored: u32, computed: u32 },
    #[error("frame {frame}: {what}")]
    Corrupt { frame: u64, what: String },
    #[error("truncated after frame {frames}: no trailer")]
    Truncated { frames: u64 },
    #[error("trailer disagrees with the frames: {what}")]
    Trailer { what: String },
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(b) => {
            out.extend_from_slice(&(b.len() as i32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

fn encode(r: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.offset.to_be_bytes());
    out.extend_from_slice(&r.timestamp.to_be_bytes());
    put_bytes(out, r.key.as_deref());
    put_bytes(out, r.value.as_deref());
    out.extend_from_slice(&(r.headers.len() as u32).to_be_bytes());
    for (name, value) in &r.headers {
        put_bytes(out, Some(name.as_bytes()));
        put_bytes(out, value.as_deref());
    }
}

/// A cursor over a decompressed payload.
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(i32::from_be_bytes)
    }
    fn bytes(&mut self) -> Option<Option<Vec<u8>>> {
        match self.i32()? {
            -1 => Some(None),
            n if n >= 0 => self.take(n as usize).map(|b| Some(b.to_vec())),
            _ => None,
        }
    }
    fn record(&mut self) -> Option<Record> {
        let offset = self.i64()?;
        let timestamp = self.i64()?;
        let key = self.bytes()?;
        let value = self.bytes()?;
        let n = u32::try_from(self.i32()?).ok()?;
        let mut headers = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            let name = String::from_utf8(self.bytes()??).ok()?;
            headers.push((name, self.bytes()?));
        }
        Some(Record { offset, timestamp, key, value, headers })
    }
}

/// Writes one segment: records are buffered into frames of about `frame_bytes` raw bytes.
pub struct SegmentWriter<W: Write> {
    out: W,
    compression: Compression,
    frame_bytes: usize,
    buffer: Vec<u8>,
    buffered: u32,
    crcs: Vec<u8>,
    summary: SegmentSummary,
}

impl<W: Write> std::fmt::Debug for SegmentWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter").field("summary", &self.summary).finish_non_exhaustive()
    }
}

impl<W: Write> SegmentWriter<W> {
    /// Start a segment on `out`.
    pub fn new(mut out: W, compression: Compression, frame_bytes: usize) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_be_bytes())?;
        out.write_all(&[compression.code()])?;
        let summary = SegmentSummary { stored_bytes: 7, ..SegmentSummary::default() };
        Ok(Self { out, compression, frame_bytes, buffer: Vec::new(), buffered: 0, crcs: Vec::new(), summary })
    }

    /// Add a record (offsets must increase).
    pub fn push(&mut self, r: &Record) -> std::io::Result<()> {
        let s = &mut self.summary;
        if s.records == 0 {
            s.first_offset = r.offset;
            s.first_timestamp = r.timestamp;
        }
        s.last_offset = r.offset;
        s.last_timestamp = r.timestamp;
        s.records += 1;
        let before = self.buffer.len();
        encode(r, &mut self.buffer);
        s.raw_bytes += (self.buffer.len() - before) as u64;
        self.buffered += 1;
        if self.buffer.len() >= self.frame_bytes {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> std::io::Result<()> {
        if self.buffered == 0 {
            return Ok(());
        }
        let payload = self.compression.compress(&self.buffer)?;
        let crc = crc32c::crc32c(&payload);
        self.out.write_all(&(payload.len() as u32).to_be_bytes())?;
        self.out.write_all(&self.buffered.to_be_bytes())?;
        self.out.write_all(&crc.to_be_bytes())?;
        self.out.write_all(&payload)?;
        self.crcs.extend_from_slice(&crc.to_be_bytes());
        self.summary.frames += 1;
        self.summary.stored_bytes += 12 + payload.len() as u64;
        self.buffer.clear();
        self.buffered = 0;
        Ok(())
    }

    /// Write the last frame and the trailer; the writer and what the segment holds.
    pub fn finish(mut self) -> std::io::Result<(W, SegmentSummary)> {
        self.flush_frame()?;
        let s = &mut self.summary;
        s.crc32c = crc32c::crc32c(&self.crcs);
        self.out.write_all(END)?;
        self.out.write_all(&s.frames.to_be_bytes())?;
        self.out.write_all(&s.records.to_be_bytes())?;
        self.out.write_all(&s.first_offset.to_be_bytes())?;
        self.out.write_all(&s.last_offset.to_be_bytes())?;
        self.out.write_all(&s.crc32c.to_be_bytes())?;
        s.stored_bytes += 40;
        self.out.flush()?;
        Ok((self.out, self.summary))
    }
}

/// Reads a segment frame by frame, checking every checksum before handing out records.
pub struct SegmentReader<R: Read> {
    input: R,
    compression: Compression,
    frames: u64,
    records: u64,
    crcs: Vec<u8>,
    first: Option<i64>,
    last: i64,
}

impl<R: Read> std::fmt::Debug for SegmentReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader").field("frames", &self.frames).finish_non_exhaustive()
    }
}

fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 if n == 0 => return Ok(false),
            0 => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read")),
            k => n += k,
        }
    }
    Ok(true)
}

impl<R: Read> SegmentReader<R> {
    /// Open a segment: checks the header.
    pub fn new(mut input: R) -> Result<Self, Error> {
        let mut head = [0u8; 7];
        input.read_exact(&mut head).map_err(|_| Error::Magic)?;
        if &head[..4] != MAGIC {
            return Err(Error::Magic);
        }
        let version = u16::from_be_bytes([head[4], head[5]]);
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let compression = Compression::from_code(head[6]).ok_or(Error::Codec(head[6]))?;
        Ok(Self { input, compression, frames: 0, records: 0, crcs: Vec::new(), first: None, last: 0 })
    }

    /// The next frame's records, or `None` after a valid trailer.
    pub fn next_frame(&mut self) -> Result<Option<Vec<Record>>, Error> {
        let frame = self.frames;
        let mut head = [0u8; 12];
        let truncated = || Error::Truncated { frames: frame };
        if !read_exact_or_eof(&mut self.input, &mut head[..4]).map_err(|_| truncated())? {
            return Err(truncated());
        }
        if &head[..4] == END {
            self.trailer()?;
            return Ok(None);
        }
        self.input.read_exact(&mut head[4..]).map_err(|_| truncated())?;
        let word = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (len, count, stored) = (word(0), word(4), word(8));
        if len > MAX_FRAME {
            return Err(Error::Corrupt { frame, what: format!("frame length {len} is implausible") });
        }
        let mut payload = vec![0u8; len as usize];
        self.input.read_exact(&mut payload).map_err(|_| truncated())?;
        let computed = crc32c::crc32c(&payload);
        if computed != stored {
            return Err(Error::Checksum { frame, stored, computed });
        }
        let raw = self
            .compression
            .decompress(&payload, MAX_FRAME as usize * 4)
            .map_err(|e| Error::Corrupt { frame, what: format!("does not decompress: {e}") })?;
        let mut c = Cursor { data: &raw, at: 0 };
        let mut records = Vec::with_capacity(count.min(1 << 20) as usize);
        for i in 0..count {
            let r = c.record().ok_or_else(|| Error::Corrupt { frame, what: format!("record {i} does not decode") })?;
            if self.first.is_some() && r.offset <= self.last {
                return Err(Error::Corrupt { frame, what: format!("offset {} is not after {}", r.offset, self.last) });
            }
            self.first.get_or_insert(r.offset);
            self.last = r.offset;
            records.push(r);
        }
        if c.at != raw.len() {
            return Err(Error::Corrupt { frame, what: "trailing bytes after the records".into() });
        }
        self.crcs.extend_from_slice(&stored.to_be_bytes());
        self.frames += 1;
        self.records += u64::from(count);
        Ok(Some(records))
    }

    fn trailer(&mut self) -> Result<(), Error> {
        let mut t = [0u8; 32];
        self.input.read_exact(&mut t).map_err(|_| Error::Truncated { frames: self.frames })?;
        let u64_at = |i: usize| u64::from_be_bytes(t[i..i + 8].try_into().unwrap_or_default());
        let (frames, records) = (u64_at(0), u64_at(8));
        let (first, last) = (u64_at(16) as i64, u64_at(24) as i64);
        let crc = {
            let mut c = [0u8; 4];
            self.input.read_exact(&mut c).map_err(|_| Error::Truncated { frames: self.frames })?;
            u32::from_be_bytes(c)
        };
        let what = if frames != self.frames {
            Some(format!("{frames} frames announced, {} read", self.frames))
        } else if records != self.records {
            Some(format!("{records} records announced, {} read", self.records))
        } else if records > 0 && (Some(first) != self.first || last != self.last) {
            Some(format!("offsets {first}..{last} announced, {:?}..{} read", self.first, self.last))
        } else if crc != crc32c::crc32c(&self.crcs) {
            Some("segment checksum mismatch".to_owned())
        } else {
            None
        };
        if let Some(what) = what {
            return Err(Error::Trailer { what });
        }
        let mut extra = [0u8; 1];
        match self.input.read(&mut extra)? {
            0 => Ok(()),
            _ => Err(Error::Trailer { what: "bytes after the trailer".into() }),
        }
    }

    /// Read the whole segment: every record, or the first problem.
    pub fn read_all(self) -> Result<Vec<Record>, Error> {
        self.read_verified().map(|(records, _)| records)
    }

    /// Read the whole segment; the records and the segment checksum (the trailer's, verified).
    pub fn read_verified(mut self) -> Result<(Vec<Record>, u32), Error> {
        let mut all = Vec::new();
        while let Some(frame) = self.next_frame()? {
            all.extend(frame);
        }
        Ok((all, crc32c::crc32c(&self.crcs)))
    }
}
