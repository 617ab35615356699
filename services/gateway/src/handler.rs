//! The MCP server the gateway is: tools/list from the registry and the memory, tools/call
//! routed to either, list changes announced to every client (by notification on a session,
//! or on a `subscriptions/listen` stream for clients of the sessionless protocol).

use crate::catalog::Catalog;
use crate::error::GatewayError;
use crate::memory_tools::{self, MemoryTools};
use crate::relay::{self, HostChannels, Routes};
use crate::stats::GatewayStats;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
    SubscriptionFilter,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Sessions followed for list changes at once; past this many, new sessions still work but
/// are not told of changes (and a warning says so).
const MAX_FOLLOWERS: usize = 10_000;
/// How often a follower looks whether its client has gone, between changes.
const FOLLOWER_CHECK: Duration = Duration::from_secs(30);

/// Mimo as one MCP server. Cheap to clone: every session of the HTTP transport gets one.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    catalog: Arc<Catalog>,
    memory: Option<MemoryTools>,
    hosts: HostChannels,
    routes: Routes,
    call_timeout: Duration,
    stats: Arc<GatewayStats>,
    reporter: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Gateway {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        memory: Option<MemoryTools>,
        call_timeout: Duration,
        stats: Arc<GatewayStats>,
        reporter: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                catalog,
                memory,
                hosts: HostChannels::default(),
                routes: Routes::default(),
                call_timeout,
                stats,
                reporter: std::sync::Mutex::new(Some(reporter)),
            }),
        }
    }

    /// Waits (a few seconds at most) for the reporter to send its last report, once its
    /// shutdown token has fired.
    pub(crate) async fn wait_for_reporter(&self) {
        let reporter = self.shared.reporter.lock().expect("reporter lock").take();
        if let Some(reporter) = reporter {
            let _ = tokio::time::timeout(Duration::from_secs(5), reporter).await;
        }
    }

    /// The gateway's counters.
    pub(crate) fn stats(&self) -> &Arc<GatewayStats> {
        &self.shared.stats
    }

    /// Sends `notifications/tools/list_changed` to `peer` after every catalogue change, until
    /// the client goes.
    fn follow_changes(&self, peer: rmcp::Peer<RoleServer>) {
        let shared = Arc::clone(&self.shared);
        let followers = &shared.stats.followers;
        if followers.fetch_add(1, Ordering::Relaxed) >= MAX_FOLLOWERS {
            followers.fetch_sub(1, Ordering::Relaxed);
            GatewayStats::count(&shared.stats.followers_refused);
            tracing::warn!(
                sessions = MAX_FOLLOWERS,
                "too many sessions to tell of tool changes; this one will not be told"
            );
            return;
        }
        let mut changes = shared.catalog.subscribe();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    change = changes.recv() => change,
                    () = tokio::time::sleep(FOLLOWER_CHECK) => {
                        if peer.is_transport_closed() { break }
                        continue;
                    }
                };
                match change {
                    Ok(()) | Err(RecvError::Lagged(_)) => {
                        if peer.notify_tool_list_changed().await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            shared.stats.followers.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

impl Gateway {
    /// Calls the tool `name`: the memory's, or a skill's through the registry.
    async fn route(
        &self,
        name: &str,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResult, GatewayError> {
        let result = match &self.shared.memory {
            Some(memory) if memory_tools::is_memory_tool(name) => {
                memory.call(name, request.arguments).await
            }
            _ => {
                let progress = context
                    .meta
                    .get_progress_token()
                    .map(|token| progress_forwarder(context.peer.clone(), token));
                relay::call_registry_tool(
                    &self.shared.catalog,
                    &self.shared.routes,
                    &self.shared.hosts,
                    name,
                    request.arguments,
                    self.shared.call_timeout,
                    &context.ct,
                    |update| {
                        if let Some(progress) = &progress {
                            // Progress is a hint: a client too slow to take it misses some.
                            let _ = progress.try_send(update);
                        }
                    },
                )
                .await
            }
        };
        GatewayStats::count(&self.shared.stats.calls);
        match &result {
            Err(GatewayError::Cancelled) => tracing::info!("call cancelled by the client"),
            Err(error) => {
                GatewayStats::count(&self.shared.stats.failed_calls);
                tracing::warn!(%error, "tool call failed");
            }
            Ok(result) if result.is_error == Some(true) => {
                GatewayStats::count(&self.shared.stats.failed_calls);
            }
            Ok(_) => {}
        }
        result
    }
}

/// Progress updates waiting for a client, at most.
const PROGRESS_BACKLOG: usize = 64;

/// A sender of a call's progress updates, passed on in order as `progress_token`'s
/// notifications to `peer` until the sender is dropped.
fn progress_forwarder(
    peer: rmcp::Peer<RoleServer>,
    progress_token: rmcp::model::ProgressToken,
) -> tokio::sync::mpsc::Sender<mimo_proto::v1::ToolProgress> {
    let (sender, mut updates) = tokio::sync::mpsc::channel(PROGRESS_BACKLOG);
    tokio::spawn(async move {
        while let Some(update) = updates.recv().await {
            let update: mimo_proto::v1::ToolProgress = update;
            let mut notification =
                ProgressNotificationParam::new(progress_token.clone(), update.progress);
            notification.total = update.total;
            if !update.message.is_empty() {
                notification.message = Some(update.message);
            }
            if peer.notify_progress(notification).await.is_err() {
                break;
            }
        }
    });
    sender
}

impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new("mimo", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Mimo: the tools of every live skill (named <skill>_<tool>) and long-term memory \
             (memory_store, memory_search, memory_get, memory_delete).",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (registered, error) = self.shared.catalog.tools().await;
        if let Some(error) = error {
            tracing::warn!(%error, "listing the registry's tools as last read");
        }
        let mut tools = match self.shared.memory {
            Some(_) => memory_tools::tools(),
            None => Vec::new(),
        };
        for tool in registered.iter() {
            if self.shared.memory.is_some() && memory_tools::is_memory_tool(&tool.name) {
                tracing::warn!(tool = %tool.name, "a skill's tool has the name of a memory tool; the memory's is listed");
                continue;
            }
            tools.push(tool.clone());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let span = tracing::info_span!("mcp.tools.call", tool = %name);
        let result =
            tracing::Instrument::instrument(self.route(&name, request, context), span).await;
        result
            .or_else(GatewayError::into_call_result)
            .map(CallToolResponse::from)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.follow_changes(context.peer);
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.shared.catalog.subscribe();
        loop {
            let change = tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => change,
            };
            match change {
                Ok(()) | Err(RecvError::Lagged(_)) => {
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
                Err(RecvError::Closed) => return Ok(()),
            }
        }
    }
}
