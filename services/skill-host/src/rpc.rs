//! JSON-RPC 2.0 over a skill's stdio, one JSON message per line: requests correlated by id,
//! a bounded window of calls in flight, bounded lines, and cancellation sent to the skill
//! when a caller gives up. Requests the skill sends are answered; notifications are routed.

use crate::framing::{oversized_message_id, BoundedLines, Frame};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

/// Messages queued for the skill's stdin at most.
const OUTBOUND_CAPACITY: usize = 256;
/// Most "not JSON-RPC" lines logged per connection; later ones are only counted.
const BAD_LINES_LOGGED: u64 = 20;

/// The bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Requests waiting for a place in flight; one more is refused at once.
    pub waiting: usize,
    /// Longest line (one JSON-RPC message) read from the skill.
    pub max_line_bytes: usize,
}

/// How a request to the skill can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The skill answered with a JSON-RPC error.
    #[error("error {code}: {message}")]
    Remote {
        /// JSON-RPC error code.
        code: i64,
        /// The skill's message.
        message: String,
    },
    /// The skill's stdout closed (it exited or crashed) before it answered.
    #[error("the skill's connection closed before it answered")]
    Closed,
    /// The skill's process ended while the request was in flight.
    #[error("the skill exited before it answered ({0})")]
    Exited(String),
    /// Both the in-flight window and the wait queue are full.
    #[error("the skill has {in_flight} calls in flight and {waiting} waiting, the limits; try again later")]
    Overloaded {
        /// The in-flight limit.
        in_flight: usize,
        /// The wait-queue limit.
        waiting: usize,
    },
    /// The skill's answer was longer than the line limit and was dropped.
    #[error("the skill's answer is {bytes} bytes; the limit is {limit}")]
    AnswerTooLarge {
        /// Length of the answer.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The deadline passed before the skill answered.
    #[error("no answer before the deadline")]
    DeadlineExceeded,
    /// The skill sent something that is not a valid answer.
    #[error("malformed answer: {0}")]
    Malformed(String),
}

type Waiter = oneshot::Sender<Result<Value, RpcError>>;

/// One `notifications/progress` of a request, as the skill sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Progress so far.
    pub progress: f64,
    /// The total, when known.
    pub total: Option<f64>,
    /// The skill's message, if any.
    pub message: String,
}

/// Counters of one connection's life.
#[derive(Debug, Default)]
pub struct RpcCounters {
    /// Answers that arrived after their caller gave up, dropped.
    pub late_answers: AtomicU64,
    /// Lines from the skill that were not JSON-RPC, dropped.
    pub bad_lines: AtomicU64,
    /// Lines from the skill over the line limit, dropped.
    pub oversized_lines: AtomicU64,
    /// Requests refused because the window and the wait queue were full.
    pub overloaded: AtomicU64,
    /// Progress notifications dropped because their caller read too slowly or had gone.
    pub progress_dropped: AtomicU64,
}

/// A JSON-RPC connection to one running skill.
#[derive(Debug)]
pub struct Connection {
    skill: String,
    outbound: mpsc::Sender<String>,
    pending: Arc<Mutex<HashMap<u64, Waiter>>>,
    /// Where each request that asked for progress wants it, by request id (its token).
    progress_routes: Mutex<HashMap<u64, mpsc::Sender<Progress>>>,
    next_id: AtomicU64,
    window: Semaphore,
    limits: ConnectionLimits,
    waiting: AtomicUsize,
    closed: CancellationToken,
    /// Why the skill ended, once it has: given to requests that arrive after.
    ended: Mutex<Option<RpcError>>,
    /// When a request last started or finished.
    last_activity: Mutex<Instant>,
    close_stdin: CancellationToken,
    tools_changed: Arc<Notify>,
    counters: Arc<RpcCounters>,
}

impl Connection {
    /// Starts the reader and writer tasks in `tasks` and returns the connection, bounded by
    /// `limits`.
    pub fn start<R, W>(
        skill: &str,
        stdout: R,
        stdin: W,
        limits: ConnectionLimits,
        tasks: &mut JoinSet<()>,
    ) -> Arc<Self>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (outbound, outbound_receiver) = mpsc::channel(OUTBOUND_CAPACITY);
        let connection = Arc::new(Self {
            skill: skill.to_string(),
            outbound,
            pending: Arc::default(),
            progress_routes: Mutex::default(),
            next_id: AtomicU64::new(1),
            window: Semaphore::new(limits.in_flight),
            limits,
            waiting: AtomicUsize::new(0),
            closed: CancellationToken::new(),
            ended: Mutex::new(None),
            last_activity: Mutex::new(Instant::now()),
            close_stdin: CancellationToken::new(),
            tools_changed: Arc::new(Notify::new()),
            counters: Arc::default(),
        });
        tasks.spawn(write_lines(
            skill.to_string(),
            stdin,
            outbound_receiver,
            connection.close_stdin.clone(),
        ));
        tasks.spawn(read_messages(connection.clone(), stdout));
        connection
    }

    /// Sends a request and waits for its answer until `deadline`. When the caller stops
    /// waiting (deadline, or the future is dropped on cancel) the skill is sent
    /// `notifications/cancelled` and a late answer is dropped and counted.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, RpcError> {
        self.request_with_progress(method, params, deadline, None)
            .await
    }

    /// [`Connection::request`], asking the skill for progress (`_meta.progressToken`, the
    /// request's id) and sending each `notifications/progress` to `progress` while the
    /// request runs; updates the caller is not ready for are dropped and counted.
    pub async fn request_with_progress(
        &self,
        method: &str,
        mut params: Value,
        deadline: Instant,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Value, RpcError> {
        if let Some(ended) = self.ended() {
            return Err(ended);
        }
        self.touch();
        let _activity = ActivityGuard(self);
        let _permit = self.enter_window(deadline).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (waiter, mut answer) = oneshot::channel();
        self.lock_pending().insert(id, waiter);
        // `fail_all_pending` records the end before it drains: a request that missed the
        // drain sees the record here.
        if let Some(ended) = self.ended() {
            self.lock_pending().remove(&id);
            return Err(ended);
        }
        let mut guard = PendingGuard {
            connection: self,
            id,
            armed: true,
        };
        if let Some(progress) = progress {
            if let Some(object) = params.as_object_mut() {
                let meta = object.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("progressToken".into(), json!(id));
                }
            }
            self.lock_progress().insert(id, progress);
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let sent = tokio::time::timeout_at(deadline, self.outbound.send(message.to_string()))
            .await
            .map_err(|_| RpcError::DeadlineExceeded)?;
        if sent.is_err() {
            // The writer is gone: the skill is ending, and its exit report reaches this
            // request through `answer` like every other pending one.
            tracing::debug!(skill = %self.skill, id, "request not sent: the skill's stdin is closed");
        }
        let answered = async {
            tokio::select! {
                biased;
                answer = &mut answer => answer,
                // Stdout closed: the skill's task soon fails every pending request with the
                // exit status and the stderr tail; wait a little for that report.
                // Stdout closed: the skill's task stops the process and then fails every
                // pending request with the exit status and the stderr tail (bounded by its
                // stop grace); the answer channel brings that report.
                () = self.closed.cancelled() => answer.await,
            }
        };
        match tokio::time::timeout_at(deadline, answered).await {
            Ok(Ok(result)) => {
                guard.armed = false;
                result
            }
            Ok(Err(_)) => {
                guard.armed = false;
                Err(RpcError::Closed)
            }
            Err(_) => Err(RpcError::DeadlineExceeded),
        }
    }

    /// Takes a place in the in-flight window, waiting in the bounded queue until `deadline`
    /// when the window is full; refuses at once when the queue is full too.
    async fn enter_window(
        &self,
        deadline: Instant,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, RpcError> {
        if let Ok(permit) = self.window.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            self.counters.overloaded.fetch_add(1, Ordering::Relaxed);
            return Err(RpcError::Overloaded {
                in_flight: self.limits.in_flight,
                waiting: self.limits.waiting,
            });
        }
        let acquired = tokio::time::timeout_at(deadline, self.window.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        acquired
            .map_err(|_| RpcError::DeadlineExceeded)?
            .map_err(|_| RpcError::Closed)
    }

    /// Sends a notification; fails only if the connection is closed or its queue is full.
    pub fn notify(&self, method: &str, params: Value) -> Result<(), RpcError> {
        let message = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.outbound
            .try_send(message.to_string())
            .map_err(|_| RpcError::Closed)
    }

    /// Closes the skill's stdin, the polite way to ask an MCP server over stdio to exit.
    pub fn close_stdin(&self) {
        self.close_stdin.cancel();
    }

    /// Woken whenever the skill sends `notifications/tools/list_changed`.
    pub fn tools_changed(&self) -> Arc<Notify> {
        self.tools_changed.clone()
    }

    /// Requests now waiting for an answer.
    pub fn in_flight(&self) -> usize {
        self.limits.in_flight - self.window.available_permits()
    }

    /// Requests now waiting for a place in flight.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// How long no request has been waiting, running or finishing; zero while any is.
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight() > 0 || self.waiting() > 0 {
            return std::time::Duration::ZERO;
        }
        self.last_activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn touch(&self) {
        *self.last_activity.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Fires when the skill's stdout has closed.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// This connection's counters.
    pub fn counters(&self) -> &RpcCounters {
        &self.counters
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_progress(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Progress>>> {
        self.progress_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn progress_arrived(&self, params: Option<&Value>) {
        let Some(params) = params else { return };
        let token = params.get("progressToken");
        let token = token
            .and_then(Value::as_u64)
            .or_else(|| token.and_then(Value::as_str).and_then(|t| t.parse().ok()));
        let Some(route) = token.and_then(|token| self.lock_progress().get(&token).cloned()) else {
            return;
        };
        let update = Progress {
            progress: params
                .get("progress")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            total: params.get("total").and_then(Value::as_f64),
            message: params
                .get("message")
                .and_then(Value::as_str)
                .map(|m| truncate(m, 1000).to_string())
                .unwrap_or_default(),
        };
        if route.try_send(update).is_err() {
            self.counters
                .progress_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dispatch(&self, line: &[u8]) {
        let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(line) else {
            let count = self.counters.bad_lines.fetch_add(1, Ordering::Relaxed) + 1;
            if count <= BAD_LINES_LOGGED {
                let text = String::from_utf8_lossy(line);
                tracing::warn!(skill = %self.skill, line = %truncate(&text, 200), count, "skill wrote a line that is not a JSON-RPC message; skipped");
            }
            return;
        };
        let method = message.get("method").and_then(Value::as_str);
        match (method, message.get("id")) {
            (None, Some(id)) => self.answer_arrived(id, &message),
            (Some(method), Some(id)) => self.answer_skill_request(method, id.clone()),
            (Some(method), None) => self.notification_arrived(method, message.get("params")),
            (None, None) => {
                self.counters.bad_lines.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(skill = %self.skill, "skill sent a message with neither id nor method");
            }
        }
    }

    fn answer_arrived(&self, id: &Value, message: &serde_json::Map<String, Value>) {
        // Ids are sent as numbers; a skill that echoes one back as a string is matched too.
        let id_number = id
            .as_u64()
            .or_else(|| id.as_str().and_then(|text| text.parse().ok()));
        let waiter = id_number.and_then(|id| self.lock_pending().remove(&id));
        let Some(waiter) = waiter else {
            self.counters.late_answers.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(skill = %self.skill, %id, "answer to a request nobody waits for; dropped");
            return;
        };
        let result = if let Some(error) = message.get("error") {
            Err(RpcError::Remote {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            })
        } else {
            message
                .get("result")
                .cloned()
                .ok_or_else(|| RpcError::Malformed("answer has neither result nor error".into()))
        };
        let _ = waiter.send(result);
    }

    fn answer_skill_request(&self, method: &str, id: Value) {
        let reply = if method == "ping" {
            json!({"jsonrpc": "2.0", "id": id, "result": {}})
        } else {
            tracing::debug!(skill = %self.skill, method, "skill asked for something mimo does not offer");
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("method {method} is not supported by this client")}})
        };
        if self.outbound.try_send(reply.to_string()).is_err() {
            tracing::warn!(skill = %self.skill, method, "could not answer the skill's request: queue full or closed");
        }
    }

    fn notification_arrived(&self, method: &str, params: Option<&Value>) {
        match method {
            "notifications/tools/list_changed" => self.tools_changed.notify_one(),
            "notifications/progress" => self.progress_arrived(params),
            "notifications/message" => {
                let level = params
                    .and_then(|p| p.get("level"))
                    .and_then(Value::as_str)
                    .unwrap_or("info");
                let data = params
                    .and_then(|p| p.get("data"))
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::info!(skill = %self.skill, level, data = %truncate(&data, 1000), "skill log");
            }
            _ => tracing::trace!(skill = %self.skill, method, "skill notification"),
        }
    }

    /// Why the skill ended, once it has.
    fn ended(&self) -> Option<RpcError> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records that the skill ended with `error` and fails every request waiting for an
    /// answer, and every later one, with it.
    pub fn fail_all_pending(&self, error: &RpcError) {
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        let waiters: Vec<Waiter> = self.lock_pending().drain().map(|(_, w)| w).collect();
        for waiter in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    fn oversized_line(&self, length: usize, head: &[u8], tail: &[u8]) {
        self.counters
            .oversized_lines
            .fetch_add(1, Ordering::Relaxed);
        let id = oversized_message_id(head, tail);
        tracing::warn!(skill = %self.skill, bytes = length, limit = self.limits.max_line_bytes, ?id, "skill wrote a line over the limit; dropped");
        let Some(waiter) = id.and_then(|id| self.lock_pending().remove(&id)) else {
            return;
        };
        let _ = waiter.send(Err(RpcError::AnswerTooLarge {
            bytes: length,
            limit: self.limits.max_line_bytes,
        }));
    }
}

/// Marks the connection active again when a request ends, however it ends.
struct ActivityGuard<'a>(&'a Connection);

impl Drop for ActivityGuard<'_> {
    fn drop(&mut self) {
        self.0.touch();
    }
}

/// Removes a request from the pending map and tells the skill to stop working on it,
/// unless its answer arrived.
struct PendingGuard<'a> {
    connection: &'a Connection,
    id: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.connection.lock_progress().remove(&self.id);
        if !self.armed || self.connection.lock_pending().remove(&self.id).is_none() {
            return;
        }
        let _ = self.connection.notify(
            "notifications/cancelled",
            json!({"requestId": self.id, "reason": "the caller cancelled or its deadline passed"}),
        );
    }
}

async fn write_lines<W: AsyncWrite + Unpin>(
    skill: String,
    mut stdin: W,
    mut lines: mpsc::Receiver<String>,
    close: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            () = close.cancelled() => break,
            line = lines.recv() => match line { Some(line) => line, None => break },
        };
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(error) = written.await {
            tracing::debug!(skill = %skill, %error, "skill's stdin closed");
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

async fn read_messages<R: AsyncRead + Unpin>(connection: Arc<Connection>, stdout: R) {
    let decoder = BoundedLines::new(connection.limits.max_line_bytes);
    let mut frames = FramedRead::new(stdout, decoder);
    while let Some(frame) = frames.next().await {
        match frame {
            Ok(Frame::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => {}
            Ok(Frame::Line(line)) => connection.dispatch(&line),
            Ok(Frame::Oversized { length, head, tail }) => {
                connection.oversized_line(length, &head, &tail);
            }
            Err(error) => {
                tracing::debug!(skill = %connection.skill, %error, "reading the skill's stdout failed");
                break;
            }
        }
    }
    connection.closed.cancel();
}

/// Returns at most `max` bytes of `text`, cut on a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
