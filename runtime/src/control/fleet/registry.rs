//! Plugin versions in an OCI registry: push a [`Packed`] version, resolve a
//! tag to a digest, pull a version by digest — with oci-client, over rustls
//! (the ring provider; no OpenSSL, no aws-lc). Everything pulled is checked
//! by [`super::artifact`] before it is used: the manifest against
//! its digest, each blob against its descriptor, bounded in bytes while it
//! downloads. Used by `scorehost push` and by fleet replicas.

use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::artifact::{self, ArtifactError, MANIFEST_MEDIA_TYPE, MAX_METADATA_BYTES, Packed};

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference is not `<registry>/<repository>[:<tag>|@<digest>]`.
    #[error("`{reference}` is not a registry reference (<registry>/<repository>:<tag>): {message}")]
    Reference {
        /// As given.
        reference: String,
        /// The parser's message.
        message: String,
    },
    /// The registry refused or could not be reached.
    #[error("registry {registry}: {step}: {message}")]
    Registry {
        /// Host and port.
        registry: String,
        /// What was being done (`pushing blob sha256:…`, `pulling the manifest`).
        step: String,
        /// oci-client's message.
        message: String,
    },
    /// What was pulled is not a valid scorehost plugin version.
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// A version pulled and checked: its manifest, digest and blobs.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's digest (what was asked for).
    pub digest: String,
    /// The checked manifest.
    pub manifest: artifact::ImageManifest,
    /// The config blob.
    pub config_blob: Vec<u8>,
    /// The component.
    pub component: Vec<u8>,
    /// The tar of the other files.
    pub files: Vec<u8>,
}

/// A registry client. Cheap to share; one per process is enough.
pub struct RegistryClient {
    client: Client,
}

impl RegistryClient {
    /// A client speaking plain HTTP (`plain_http`, for a registry on loopback
    /// or a private network) or HTTPS, with anonymous auth.
    pub fn new(plain_http: bool) -> Self {
        static PROVIDER: Once = Once::new();
        // oci-client's rustls is built without a provider of its own: ring is it.
        PROVIDER.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let protocol = if plain_http { ClientProtocol::Http } else { ClientProtocol::Https };
        Self { client: Client::new(ClientConfig { protocol, ..Default::default() }) }
    }

    /// Pushes `packed` to `reference` (`<registry>/<repository>:<tag>`): the
    /// blobs the registry lacks, then the manifest under the tag. Returns the
    /// manifest's digest, after checking that the registry reports the same.
    pub async fn push(&self, reference: &str, packed: &Packed) -> Result<String, RegistryError> {
        let image = parse(reference)?;
        let fail = |step: String| {
            let registry = image.registry().to_owned();
            move |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
                registry,
                step,
                message: e.to_string(),
            }
        };
        for (digest, bytes) in packed.blobs() {
            let exists = self
                .client
                .blob_exists(&image, &digest)
                .await
                .map_err(fail(format!("checking blob {digest}")))?;
            if !exists {
                self.client
                    .push_blob(&image, bytes.to_vec(), &digest)
                    .await
                    .map_err(fail(format!("pushing blob {digest}")))?;
            }
        }
        let content_type = hyper::header::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
        self.client
            .push_manifest_raw(&image, packed.manifest.clone(), content_type)
            .await
            .map_err(fail("pushing the manifest".into()))?;
        let stored = self.resolve(reference).await?;
        if stored != packed.digest {
            return Err(ArtifactError::Mismatch {
                what: format!("the digest {reference} resolves to after the push"),
                expected: packed.digest.clone(),
                actual: stored,
            }
            .into());
        }
        Ok(packed.digest.clone())
    }

    /// The digest `reference`'s tag points at now.
    pub async fn resolve(&self, reference: &str) -> Result<String, RegistryError> {
        let image = parse(reference)?;
        self.client.fetch_manifest_digest(&image, &RegistryAuth::Anonymous).await.map_err(|e| {
            RegistryError::Registry {
                registry: image.registry().to_owned(),
                step: format!("resolving {reference}"),
                message: e.to_string(),
            }
        })
    }

    /// Pulls the version `digest` from `repository` (`<registry>/<repository>`,
    /// any tag ignored) and checks it: at most `max_bytes` of layers, each blob
    /// cut off as soon as it runs past its declared size.
    pub async fn pull(
        &self,
        repository: &str,
        digest: &str,
        max_bytes: u64,
    ) -> Result<Pulled, RegistryError> {
        let named = parse(repository)?;
        let image = Reference::with_digest(
            named.registry().to_owned(),
            named.repository().to_owned(),
            digest.to_owned(),
        );
        let fail = |step: &str| {
            let (registry, step) = (image.registry().to_owned(), step.to_owned());
            move |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
                registry,
                step,
                message: e.to_string(),
            }
        };
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&image, &RegistryAuth::Anonymous, &[MANIFEST_MEDIA_TYPE])
            .await
            .map_err(fail("pulling the manifest"))?;
        if bytes.len() as u64 > MAX_METADATA_BYTES {
            return Err(ArtifactError::NotAPlugin(format!("a manifest of {} bytes", bytes.len())).into());
        }
        let manifest = artifact::check_manifest(&bytes, digest, max_bytes)?;
        let mut blobs = Vec::with_capacity(3);
        for (what, descriptor) in [
            ("the config", &manifest.config),
            ("the component", &manifest.layers[0]),
            ("the files", &manifest.layers[1]),
        ] {
            let mut out = Bounded { bytes: Vec::new(), limit: descriptor.size };
            self.client
                .pull_blob(&image, descriptor.digest.as_str(), &mut out)
                .await
                .map_err(fail(&format!("pulling {what} ({})", descriptor.digest)))?;
            artifact::check_blob(what, descriptor, &out.bytes)?;
            blobs.push(out.bytes);
        }
        let files = blobs.pop().expect("three blobs");
        let component = blobs.pop().expect("three blobs");
        let config_blob = blobs.pop().expect("three blobs");
        Ok(Pulled { digest: digest.to_owned(), manifest, config_blob, component, files })
    }
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    reference
        .parse::<Reference>()
        .map_err(|e| RegistryError::Reference { reference: reference.to_owned(), message: e.to_string() })
}

/// A download buffer that fails the write past `limit` bytes, so a blob
/// larger than its descriptor says is cut off, not held.
struct Bounded {
    bytes: Vec<u8>,
    limit: u64,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.bytes.len() as u64 + buf.len() as u64 > self.limit {
            let limit = self.limit;
            return Poll::Ready(Err(std::io::Error::other(format!(
                "the blob runs past its declared {limit} bytes"
            ))));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
