//! The repository's content engine: the bytes of Data Repository items, streamed in and out of a directory or an
//! S3-compatible bucket chosen by URL, while the Store keeps each item's metadata ([`crate::model::RepositoryItem`]).
//!
//! ```text
//! --content /var/lib/omadm/content | file:///var/lib/omadm/content       a directory (a shared volume in a cluster)
//! --content s3://firmware/omadm?endpoint=http://minio:9000&region=eu-1   S3 or any S3-compatible store
//! --content memory://                                                     in this process only (tests, trials)
//!
//! write(body stream, limit) -> StoredBlob {key: "items/<128-bit hex>", size, sha256}
//! read(key, range)          -> stream of chunks of at most 64 KiB
//! ```
//!
//! Every write goes to a new key, so a download in progress keeps reading the bytes it started on while the item
//! is replaced; the replaced blob is deleted once the Store points at the new one.

use std::fmt;
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use futures_util::{Stream, TryStream};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};
use sha2::{Digest as _, Sha256};

/// Largest chunk a read yields: what one download holds in memory at a time, beside the socket's buffers.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A read's bytes, chunk by chunk.
pub type ContentStream = BoxStream<'static, Result<Bytes, ContentError>>;

/// Why the content engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// The `--content` URL names no engine this server has, or the engine refused its settings.
    #[error("content engine {url:?}: {reason}")]
    Config { url: String, reason: String },
    /// The body was longer than the write's limit; nothing was kept.
    #[error("the content is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Reading the body from its sender failed (the client's fault); nothing was kept.
    #[error("reading the content from its sender failed: {0}")]
    Body(String),
    /// No blob under the key (deleted behind the Store's back, or never finished).
    #[error("no content under {0:?}")]
    NotFound(String),
    /// The engine failed (disk, network, bucket).
    #[error("content engine: {0}")]
    Engine(String),
}

impl From<object_store::Error> for ContentError {
    fn from(error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { path, .. } => ContentError::NotFound(path),
            other => ContentError::Engine(other.to_string()),
        }
    }
}

/// What a finished write stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// The engine's key of the bytes (`RepositoryItem::blob`).
    pub key: String,
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex: the item's strong ETag.
    pub sha256: String,
}

/// Which kind of engine holds the bytes, for the banner, metrics and the part size of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Directory,
    S3,
    Memory,
}

/// The content engine of one process; cheap to clone (the engine is shared).
#[derive(Clone)]
pub struct ContentEngine {
    objects: Arc<dyn ObjectStore>,
    kind: EngineKind,
    /// The URL without its query (which may carry credentials), for the banner and logs.
    description: String,
}

impl fmt::Debug for ContentEngine {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("ContentEngine").field("kind", &self.kind).field("at", &self.description).finish()
    }
}

impl ContentEngine {
    /// The engine a `--content` value names: a directory path or `file://` URL, `s3://bucket[/prefix][?key=value&...]`
    /// (keys as object_store's `AmazonS3ConfigKey`: `endpoint`, `region`, `allow_http`, `access_key_id`, ...; the
    /// `AWS_*` environment is read first), or `memory://`.
    pub fn open(url: &str) -> Result<ContentEngine, ContentError> {
        let config = |reason: String| ContentError::Config { url: without_query(url).to_owned(), reason };
        if url == "memory://" {
            return Ok(ContentEngine {
                objects: Arc::new(InMemory::new()),
                kind: EngineKind::Memory,
                description: url.to_owned(),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            if bucket.is_empty() {
                return Err(config("an s3:// URL names its bucket: s3://bucket[/prefix]".to_owned()));
            }
            let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let key: AmazonS3ConfigKey =
                    key.parse().map_err(|_| config(format!("unknown S3 setting {key:?} in the URL's query")))?;
                builder = builder.with_config(key, value);
            }
            let s3 = builder.build().map_err(|error| config(error.to_string()))?;
            let objects: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                prefix => Arc::new(PrefixStore::new(s3, prefix)),
            };
            return Ok(ContentEngine { objects, kind: EngineKind::S3, description: format!("s3://{location}") });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(config("the content engine is a directory, file://, s3:// or memory://".to_owned()));
        }
        let directory = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        ContentEngine::directory(&directory).map_err(|error| match error {
            ContentError::Config { reason, .. } => config(reason),
            other => other,
        })
    }

    /// A directory engine at `directory`, created (owner only) when missing.
    pub fn directory(directory: &FsPath) -> Result<ContentEngine, ContentError> {
        let config = |reason: String| ContentError::Config { url: directory.display().to_string(), reason };
        create_private_dir(directory).map_err(|error| config(format!("cannot create the directory: {error}")))?;
        let local = LocalFileSystem::new_with_prefix(directory).map_err(|error| config(error.to_string()))?;
        Ok(ContentEngine {
            objects: Arc::new(local),
            kind: EngineKind::Directory,
            description: directory.display().to_string(),
        })
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Where the bytes live, without credentials.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Streams `body` into a new blob, up to `limit` bytes (past it the write stops, nothing is kept and the answer
    /// is [`ContentError::TooLarge`]). Memory held is one part (1 MiB, 5 MiB on S3, its smallest part) plus the
    /// chunk in hand, whatever the size.
    pub async fn write<S>(&self, body: S, limit: u64) -> Result<StoredBlob, ContentError>
    where
        S: TryStream<Ok = Bytes> + Unpin,
        S::Error: fmt::Display,
    {
        let key = format!("items/{:032x}", rand::random::<u128>());
        let location = ObjectPath::from(key.as_str());
        let part_bytes = if self.kind == EngineKind::S3 { 5 << 20 } else { 1 << 20 };
        let upload = self.objects.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_bytes);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = body.into_stream();
        let outcome: Result<(), ContentError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|error| ContentError::Body(error.to_string()))?;
                size = size.saturating_add(chunk.len() as u64);
                if size > limit {
                    return Err(ContentError::TooLarge { limit });
                }
                hasher.update(&chunk);
                writer.wait_for_capacity(2).await?;
                writer.write(&chunk);
            }
            Ok(())
        }
        .await;
        if let Err(error) = outcome {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(error = %abort, key, "an abandoned content write could not be cleaned up");
            }
            return Err(error);
        }
        writer.finish().await?;
        Ok(StoredBlob { key, size, sha256: hex::encode(hasher.finalize()) })
    }

    /// The bytes `range` of the blob `key` (the whole blob for `0..size`), in chunks of at most
    /// [`READ_CHUNK_BYTES`]. An empty range reads nothing.
    pub async fn read(&self, key: &str, range: Range<u64>) -> Result<ContentStream, ContentError> {
        if range.is_empty() {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range.clone())), ..GetOptions::default() };
        let result = self.objects.get_opts(&ObjectPath::from(key), options).await?;
        Ok(match result.payload {
            GetResultPayload::File(file, _) => file_chunks(file, result.range),
            GetResultPayload::Stream(stream) => stream.map_err(ContentError::from).flat_map(rechunk).boxed(),
        })
    }

    /// Drops the blob `key`; a key with nothing under it is no error.
    pub async fn delete(&self, key: &str) -> Result<(), ContentError> {
        match self.objects.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether a blob is there (for tests and checks).
    pub async fn exists(&self, key: &str) -> Result<bool, ContentError> {
        match self.objects.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

/// A URL without its query, which may carry credentials.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(head, _)| head)
}

fn create_private_dir(directory: &FsPath) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(directory)
}

/// Splits a stream's chunk into pieces of at most [`READ_CHUNK_BYTES`] (slices of one buffer, no copies).
fn rechunk(chunk: Result<Bytes, ContentError>) -> impl Stream<Item = Result<Bytes, ContentError>> {
    let pieces: Vec<Result<Bytes, ContentError>> = match chunk {
        Err(error) => vec![Err(error)],
        Ok(bytes) => (0..bytes.len())
            .step_by(READ_CHUNK_BYTES)
            .map(|start| {
                let end = bytes.len().min(start + READ_CHUNK_BYTES);
                Ok(bytes.slice(start..end))
            })
            .collect(),
    };
    futures_util::stream::iter(pieces)
}

/// Reads `range` of an open file in [`READ_CHUNK_BYTES`] pieces on the blocking pool, one piece in flight.
fn file_chunks(file: std::fs::File, range: Range<u64>) -> ContentStream {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let state = (file, range.start, range.end, false);
    futures_util::stream::try_unfold(state, |(mut file, position, end, positioned)| async move {
        if position >= end {
            return Ok(None);
        }
        let wanted = usize::try_from((end - position).min(READ_CHUNK_BYTES as u64)).unwrap_or(READ_CHUNK_BYTES);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, Vec<u8>)> {
            if !positioned {
                file.seek(SeekFrom::Start(position))?;
            }
            let mut buffer = Vec::with_capacity(wanted);
            (&mut file).take(wanted as u64).read_to_end(&mut buffer)?;
            Ok((file, buffer))
        })
        .await
        .map_err(|error| ContentError::Engine(format!("the read task failed: {error}")))?;
        let (file, buffer) = read.map_err(|error| ContentError::Engine(format!("reading the content: {error}")))?;
        if buffer.is_empty() {
            return Err(ContentError::Engine("the content is shorter than its record".to_owned()));
        }
        let next = position + buffer.len() as u64;
        Ok(Some((Bytes::from(buffer), (file, next, end, true))))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl TryStream<Ok = Bytes, Error = std::io::Error> + Unpin {
        futures_util::stream::iter(parts.iter().map(|part| Ok(Bytes::from_static(part))).collect::<Vec<_>>())
    }

    async fn collect(stream: ContentStream) -> Vec<u8> {
        stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .unwrap()
    }

    async fn round_trip(engine: ContentEngine) {
        let blob = engine.write(chunks(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(blob.size, 11);
        assert_eq!(blob.sha256, hex::encode(Sha256::digest(b"hello world")));
        assert!(blob.key.starts_with("items/"));
        assert_eq!(collect(engine.read(&blob.key, 0..11).await.unwrap()).await, b"hello world");
        assert_eq!(collect(engine.read(&blob.key, 6..11).await.unwrap()).await, b"world");
        assert_eq!(collect(engine.read(&blob.key, 3..3).await.unwrap()).await, b"");

        let other = engine.write(chunks(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_ne!(other.key, blob.key, "every write is a new blob");

        let refused = engine.write(chunks(&[b"0123456789", b"0123456789"]), 15).await.unwrap_err();
        assert!(matches!(refused, ContentError::TooLarge { limit: 15 }), "{refused}");

        assert!(engine.exists(&blob.key).await.unwrap());
        engine.delete(&blob.key).await.unwrap();
        assert!(!engine.exists(&blob.key).await.unwrap());
        engine.delete(&blob.key).await.unwrap();
        assert!(matches!(engine.read(&blob.key, 0..11).await, Err(ContentError::NotFound(_))));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_engine_streams_ranges_and_keeps_nothing_of_a_refused_write() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("content");
        let engine = ContentEngine::open(&format!("file://{}", root.display())).unwrap();
        assert_eq!(engine.kind(), EngineKind::Directory);
        round_trip(engine.clone()).await;
        // Only the second "hello world" is left: the refused write left no file behind.
        let files: Vec<_> = walk(&root);
        assert_eq!(files.len(), 1, "{files:?}");
    }

    #[tokio::test]
    async fn a_memory_engine_behaves_the_same() {
        round_trip(ContentEngine::open("memory://").unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_blob_reads_back_in_bounded_chunks() {
        let temp = tempfile::tempdir().unwrap();
        let engine = ContentEngine::directory(temp.path()).unwrap();
        let body: Vec<u8> = (0..3_000_000u32).map(|index| (index % 251) as u8).collect();
        let pieces: Vec<Result<Bytes, std::io::Error>> =
            body.chunks(100_000).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
        let blob = engine.write(futures_util::stream::iter(pieces), 10_000_000).await.unwrap();
        let mut stream = engine.read(&blob.key, 1_000..2_500_000).await.unwrap();
        let mut read = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= READ_CHUNK_BYTES);
            read.extend_from_slice(&chunk);
        }
        assert_eq!(read, &body[1_000..2_500_000]);
    }

    #[test]
    fn urls_name_their_engine_or_say_why_not() {
        for bad in ["postgres://x", "s3://", "s3://bucket?no_such_setting=1"] {
            let error = ContentEngine::open(bad).unwrap_err();
            assert!(matches!(error, ContentError::Config { .. }), "{bad}: {error}");
        }
        let s3 = ContentEngine::open("s3://bucket/firmware?region=eu-1&endpoint=http://127.0.0.1:1&allow_http=true")
            .unwrap();
        assert_eq!((s3.kind(), s3.description()), (EngineKind::S3, "s3://bucket/firmware"));
        let secret = ContentEngine::open("s3://?secret_access_key=hunter2").unwrap_err();
        assert!(!secret.to_string().contains("hunter2"), "{secret}");
    }

    fn walk(directory: &FsPath) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
        }
        files
    }
}
