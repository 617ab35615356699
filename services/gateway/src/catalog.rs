//! The registry's live tools as MCP tools, and the watch that tells connected clients when
//! they change.

use crate::error::GatewayError;
use mimo_proto::connect::Channel;
use mimo_proto::v1::registry_client::RegistryClient;
use mimo_proto::v1::{ListToolsRequest, RegisteredTool, WatchRequest};
use rmcp::model::{JsonObject, Tool};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Most tools taken from the registry (ten pages of its largest size).
const MAX_TOOLS: usize = 10_000;
/// Changes a slow client may fall behind by before it is sent one notification for all.
const CHANGE_BACKLOG: usize = 16;
/// Longest wait between two attempts to watch an unreachable registry.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// The registry's tools, the last list that could be read, and the change signal.
#[derive(Debug)]
pub(crate) struct Catalog {
    registry: RegistryClient<Channel>,
    address: String,
    last_listed: Mutex<Arc<Vec<Tool>>>,
    changes: broadcast::Sender<()>,
    /// Grows with every change seen, and whenever the watch is lost or regained.
    generation: AtomicU64,
    /// Whether the watch is live, so that changes are being seen.
    watching: AtomicBool,
}

impl Catalog {
    /// A catalogue read from the registry at `address` over `channel`.
    pub(crate) fn new(address: &str, channel: Channel) -> Self {
        Self {
            registry: mimo_proto::connect::registry(channel),
            address: address.to_string(),
            last_listed: Mutex::new(Arc::new(Vec::new())),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
            generation: AtomicU64::new(0),
            watching: AtomicBool::new(false),
        }
    }

    /// The catalogue's generation while the watch is live (what was learned under one
    /// generation holds until it changes), or `None` when changes may be going unseen.
    pub(crate) fn generation(&self) -> Option<u64> {
        self.watching
            .load(Ordering::Acquire)
            .then(|| self.generation.load(Ordering::Acquire))
    }

    /// Tells followers and the route cache that the catalogue changed.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let _ = self.changes.send(());
    }

    /// Marks the watch live or lost (either way, what was learned before may be stale).
    fn set_watching(&self, watching: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.watching.store(watching, Ordering::Release);
    }

    /// The registry client.
    pub(crate) fn registry(&self) -> RegistryClient<Channel> {
        self.registry.clone()
    }

    /// The registry's address, for messages.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// A receiver of one `()` per change of the catalogue.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<()> {
        self.changes.subscribe()
    }

    /// Every live tool, read now; when the registry cannot be read, the last list that
    /// could be, with the error.
    pub(crate) async fn tools(&self) -> (Arc<Vec<Tool>>, Option<GatewayError>) {
        match self.list().await {
            Ok(tools) => {
                let tools = Arc::new(tools);
                *self.last_listed.lock().expect("catalogue lock") = Arc::clone(&tools);
                (tools, None)
            }
            Err(error) => {
                let last = Arc::clone(&self.last_listed.lock().expect("catalogue lock"));
                (last, Some(error))
            }
        }
    }

    /// Every page of ListTools, as MCP tools.
    async fn list(&self) -> Result<Vec<Tool>, GatewayError> {
        let mut registry = self.registry();
        let mut tools = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = registry
                .list_tools(ListToolsRequest {
                    page_token,
                    ..ListToolsRequest::default()
                })
                .await
                .map_err(|status| GatewayError::from_status("registry", &self.address, &status))?
                .into_inner();
            tools.extend(page.tools.into_iter().map(mcp_tool));
            if page.next_page_token.is_empty() || tools.len() >= MAX_TOOLS {
                if tools.len() >= MAX_TOOLS {
                    tracing::warn!(
                        listed = tools.len(),
                        "the registry holds more tools than a client is given; the rest are left out"
                    );
                    tools.truncate(MAX_TOOLS);
                }
                return Ok(tools);
            }
            page_token = page.next_page_token;
        }
    }

    /// Watches the registry until `shutdown`, signalling each change, and after every
    /// reconnection (changes may have been missed meanwhile); retries with a growing delay
    /// while the registry is unreachable.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut delay = Duration::from_millis(100);
        let mut connected_before = false;
        let mut outage_logged = false;
        loop {
            let mut registry = self.registry();
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                attempt = registry.watch(WatchRequest::default()) => attempt,
            };
            match attempt {
                Ok(stream) => {
                    self.set_watching(true);
                    if connected_before || outage_logged {
                        tracing::info!(registry = %self.address, "watching the registry again");
                        self.changed();
                    }
                    connected_before = true;
                    outage_logged = false;
                    delay = Duration::from_millis(100);
                    let mut stream = stream.into_inner();
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => return,
                            message = stream.message() => message,
                        };
                        if !matches!(&message, Ok(Some(change)) if !change.compacted) {
                            self.set_watching(false);
                        }
                        match message {
                            Ok(Some(change)) if change.compacted => break,
                            Ok(Some(change)) => {
                                if !change.events.is_empty() {
                                    self.changed();
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(registry = %self.address, error = %status.message(), "the registry's watch ended; watching again");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    if !outage_logged {
                        tracing::warn!(registry = %self.address, error = %status.message(), "cannot watch the registry; retrying");
                        outage_logged = true;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }
}

/// The MCP tool a registered tool is served as: its public name, its skill's description,
/// title and input schema.
fn mcp_tool(registered: RegisteredTool) -> Tool {
    let described = registered.tool.unwrap_or_default();
    let schema = serde_json::from_str::<JsonObject>(&described.input_schema_json)
        .unwrap_or_else(|_| JsonObject::from_iter([("type".to_string(), "object".into())]));
    let mut tool = Tool::new(registered.name, described.description, Arc::new(schema));
    if !described.title.is_empty() {
        tool.title = Some(described.title);
    }
    tool
}
