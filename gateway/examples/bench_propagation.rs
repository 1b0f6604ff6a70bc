//! Propagation benchmark: how long after a gRPC write returns the change
//! serves traffic, on one node with the file store and on three nodes
//! sharing one etcd; then 200 writes/s for 30 s while `wrk` loads the data
//! plane (failed requests, and req/s against the same load without writes).
//! The writes are an open loop: one is due every 5 ms whatever the previous
//! ones are doing, taken by a pool of writers each updating its own route.
//!
//! Usage: `bench_propagation GATEWAY_BINARY [writes] [sustain_seconds]`,
//! run by `make bench-propagation` (release build); `sustain_seconds` 0
//! skips the phases under load (propagation and write cost only). It starts everything
//! itself: a small upstream, etcd (`scripts/etcd.sh`), the gateway nodes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pingora_config::v1;
use pingora_config::v1::resource_service_client::ResourceServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Kills its process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    proc: Proc,
    port: u16,
    admin: u16,
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    parse_cpu_time(&stat)
}

/// CPU time of each thread of a process outside its data plane (Pingora's
/// `listener <name>` workers and its timer thread): the admin API, the
/// committer, the store, health checks. By thread id, since threads come
/// and go (the blocking pool's).
fn control_plane_cpu(pid: u32) -> std::collections::HashMap<u32, Duration> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Default::default() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let comm = stat.split_once('(')?.1.rsplit_once(')')?.0;
            (!comm.starts_with("listener ") && comm != "Timer thread").then(|| (tid, parse_cpu_time(&stat)))
        })
        .collect()
}

/// The control-plane CPU used since `before` (threads gone since are not
/// counted; threads started since count whole).
fn control_plane_since(pid: u32, before: &std::collections::HashMap<u32, Duration>) -> Duration {
    control_plane_cpu(pid)
        .into_iter()
        .map(|(tid, t)| t.saturating_sub(before.get(&tid).copied().unwrap_or_default()))
        .sum()
}

/// utime + stime of a `/proc/.../stat` line.
fn parse_cpu_time(stat: &str) -> Duration {
    // Fields after the command name (in parentheses): utime and stime are
    // the 14th and 15th of the line.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn wait_port(port: u16, what: &str) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not start").into())
}

/// `command` run under `taskset -c cpus` when `cpus` is given.
fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn start_node(
    binary: &Path,
    dir: &Path,
    name: &str,
    store: &str,
    threads: u32,
    cpus: Option<&str>,
) -> Result<Node, BoxError> {
    let (port, admin) = (free_port()?, free_port()?);
    let d = dir.join(name);
    std::fs::create_dir_all(&d)?;
    let bootstrap = format!(
        "node_id: {name}\nthreads: {threads}\nlisteners:\n  - {{ name: http, address: \"127.0.0.1:{port}\" }}\nadmin:\n  address: \"127.0.0.1:{admin}\"\nlogging: {{ level: WARN, access_log: {{ disabled: true }} }}\nstore:\n{store}"
    );
    let store_path = d.join("gateway.yaml");
    std::fs::write(&store_path, bootstrap.replace("$DIR", &d.display().to_string()))?;
    std::fs::write(d.join("config.yaml"), "")?;
    let log = std::fs::File::create(d.join("gateway.log"))?;
    let child = pinned(binary, cpus)
        .args(["run", "--bootstrap"])
        .arg(&store_path)
        .arg("--pid-file")
        .arg(d.join("pid"))
        .arg("--upgrade-sock")
        .arg(d.join("sock"))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    let proc = Proc(child);
    wait_port(port, name)?;
    wait_port(admin, name)?;
    Ok(Node { proc, port, admin })
}

/// A minimal HTTP/1.1 upstream answering 200 "ok" to everything.
async fn upstream() -> Result<u16, BoxError> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
                        if s.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(port)
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, BoxError> {
    Ok(serde_json::from_value(v)?)
}

async fn api(node: &Node) -> Result<ResourceServiceClient<Channel>, BoxError> {
    let ch = Channel::from_shared(format!("http://127.0.0.1:{}", node.admin))?.connect().await?;
    Ok(ResourceServiceClient::new(ch))
}

/// Polls `path` on `port` until it answers 200; the time it took.
async fn until_served(client: &reqwest::Client, port: u16, path: &str, since: Instant) -> Duration {
    let url = format!("http://127.0.0.1:{port}{path}");
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(10) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `writes` routes created through the first node; for each, the time from
/// the write returning until every node serves it.
/// `BENCH_ROUTES` (default 0): that many more routes, applied in one
/// `ApplyConfig` before the writes, so that the writes run on a large config.
async fn preload(node: &Node, upstream_port: u16) -> Result<(), BoxError> {
    let n: usize = std::env::var("BENCH_ROUTES").ok().map(|v| v.parse()).transpose()?.unwrap_or(0);
    if n == 0 {
        return Ok(());
    }
    let routes: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({ "id": format!("bulk{i}"), "uris": [format!("/bulk/{i}")], "upstream_id": "bulk" }))
        .collect();
    let config: v1::Config = from_json(serde_json::json!({
        "upstreams": [{ "id": "bulk", "nodes": [{ "host": "127.0.0.1", "port": upstream_port }] }],
        "routes": routes,
    }))?;
    let ch = Channel::from_shared(format!("http://127.0.0.1:{}", node.admin))?.connect().await?;
    let mut c = v1::config_service_client::ConfigServiceClient::new(ch).max_encoding_message_size(usize::MAX);
    let started = Instant::now();
    c.apply_config(v1::ApplyConfigRequest { config: Some(config), expected_revision: 0, dry_run: false }).await?;
    println!("preload: {n} routes applied in {:.0} ms", ms(started.elapsed()));
    Ok(())
}

async fn propagation(nodes: &[Node], upstream_port: u16, writes: usize, label: &str) -> Result<(), BoxError> {
    preload(&nodes[0], upstream_port).await?;
    let mut res = api(&nodes[0]).await?;
    let u: v1::Upstream =
        from_json(serde_json::json!({ "id": "u", "nodes": [{ "host": "127.0.0.1", "port": upstream_port }] }))?;
    res.create_upstream(v1::CreateUpstreamRequest { upstream: Some(u) }).await?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(4).build()?;
    let mut all = Vec::new();
    let mut write_times = Vec::new();
    for i in 0..writes {
        let r: v1::Route =
            from_json(serde_json::json!({ "id": format!("p{i}"), "uris": [format!("/p{i}")], "upstream_id": "u" }))?;
        let started = Instant::now();
        res.create_route(v1::CreateRouteRequest { route: Some(r) }).await?;
        write_times.push(started.elapsed());
        let since = Instant::now();
        let path = format!("/p{i}");
        let polls = nodes.iter().map(|n| until_served(&client, n.port, &path, since));
        let times = futures_join(polls).await;
        all.push(times.into_iter().max().unwrap_or_default());
    }
    all.sort();
    write_times.sort();
    println!(
        "propagation {label}: {writes} writes; write returned -> served by every node: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (the gRPC write itself: p50 {:.2} ms, p99 {:.2} ms)",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99)),
        ms(all.last().copied().unwrap_or_default()),
        ms(percentile(&write_times, 0.5)),
        ms(percentile(&write_times, 0.99)),
    );
    Ok(())
}

async fn futures_join<F: std::future::Future<Output = Duration>>(futures: impl Iterator<Item = F>) -> Vec<Duration> {
    let mut out = Vec::new();
    let handles: Vec<_> = futures.collect();
    // Polled together: each is a loop of short sleeps.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<Duration>> = vec![None; pinned.len()];
    std::future::poll_fn(|cx| {
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none()
                && let std::task::Poll::Ready(d) = f.as_mut().poll(cx)
            {
                done[i] = Some(d);
            }
        }
        if done.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// wrk's requests/s and failed requests (non-2xx/3xx plus socket errors).
fn wrk(port: u16, seconds: u64, cpus: Option<&str>) -> Result<(f64, u64), BoxError> {
    let out = pinned(Path::new("wrk"), cpus)
        .args(["-t", "1", "-c", "16", "-d", &format!("{seconds}s"), &format!("http://127.0.0.1:{port}/bench")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let mut failed = 0;
    for l in text.lines() {
        if let Some(v) = l.trim().strip_prefix("Non-2xx or 3xx responses:") {
            failed += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = l.trim().strip_prefix("Socket errors:") {
            failed += v.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum::<u64>();
        }
    }
    Ok((rps, failed))
}

/// How many writers share the 200 writes/s, each updating its own route
/// (updates carry the route's `expected_revision`, so writers on the same
/// route would conflict with each other; on their own routes they never do).
const WRITERS: usize = 8;
/// One write is due every 5 ms: 200 writes/s.
const WRITE_INTERVAL: Duration = Duration::from_millis(5);

/// What the open-loop writers saw.
#[derive(Default)]
struct WriteStats {
    /// From the time each write was due (not when a writer got to it, so a
    /// backlog counts) until it returned.
    latencies: Vec<Duration>,
    failed: u64,
    conflicts: u64,
}

/// Open loop: one write due every [`WRITE_INTERVAL`] for `seconds`, whether
/// or not the previous ones returned; [`WRITERS`] writers take the due
/// writes in order. Returns the stats and the time until the last write
/// returned.
/// Turns the open-loop writers on and off (the interleaved rounds).
#[derive(Default)]
struct Switch {
    /// While set, no write is due.
    paused: std::sync::atomic::AtomicBool,
    /// Set: no more writes are due at all.
    stop: std::sync::atomic::AtomicBool,
}

async fn open_loop_writes(
    res: ResourceServiceClient<Channel>,
    seconds: u64,
    switch: std::sync::Arc<Switch>,
) -> Result<(WriteStats, Duration), BoxError> {
    let mut revisions = Vec::new();
    for w in 0..WRITERS {
        let churn: v1::Route = from_json(
            serde_json::json!({ "id": format!("churn{w}"), "uris": [format!("/churn{w}-0")], "upstream_id": "u" }),
        )?;
        // Created by the first run, taken over by the next.
        let meta = match res.clone().create_route(v1::CreateRouteRequest { route: Some(churn) }).await {
            Ok(e) => e.into_inner().meta,
            Err(e) if e.code() == tonic::Code::AlreadyExists => {
                res.clone().get_route(v1::GetRouteRequest { id: format!("churn{w}") }).await?.into_inner().meta
            }
            Err(e) => return Err(e.into()),
        };
        revisions.push(meta.map(|m| m.revision).unwrap_or(0));
    }
    let (due_tx, due_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let due_rx = std::sync::Arc::new(tokio::sync::Mutex::new(due_rx));
    let stats = std::sync::Arc::new(std::sync::Mutex::new(WriteStats::default()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for (w, mut revision) in revisions.into_iter().enumerate() {
        let (mut res, due_rx, stats) = (res.clone(), due_rx.clone(), stats.clone());
        writers.push(tokio::spawn(async move {
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((n, due)) = next else { return };
                let r: v1::Route = match from_json(
                    serde_json::json!({ "id": format!("churn{w}"), "uris": [format!("/churn{w}-{n}")], "upstream_id": "u" }),
                ) {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let result = res.update_route(v1::UpdateRouteRequest { route: Some(r), expected_revision: revision }).await;
                let took = due.elapsed();
                let conflict = match result {
                    Ok(e) => {
                        revision = e.into_inner().meta.map(|m| m.revision).unwrap_or(revision);
                        None
                    }
                    Err(e) => Some(e),
                };
                let reported = {
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    s.latencies.push(took);
                    match &conflict {
                        Some(e) if e.code() == tonic::Code::Aborted => s.conflicts += 1,
                        Some(_) => s.failed += 1,
                        None => {}
                    }
                    s.failed + s.conflicts
                };
                if let Some(e) = conflict {
                    if reported <= 5 {
                        eprintln!("write: {e}");
                    }
                    // Read the route again, as a client would after a conflict.
                    if let Ok(g) = res.get_route(v1::GetRouteRequest { id: format!("churn{w}") }).await {
                        revision = g.into_inner().meta.map(|m| m.revision).unwrap_or(revision);
                    }
                }
            }
        }));
    }
    let total = (Duration::from_secs(seconds).as_nanos() / WRITE_INTERVAL.as_nanos()) as u64;
    for n in 0..total {
        let due = started + WRITE_INTERVAL * n as u32;
        tokio::time::sleep_until(due.into()).await;
        if switch.stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if switch.paused.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        if due_tx.send((n, due)).is_err() {
            break;
        }
    }
    drop(due_tx);
    for w in writers {
        w.await?;
    }
    let elapsed = started.elapsed();
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|p| p.into_inner()));
    Ok((stats, elapsed))
}

/// 200 writes/s through the first node for 5 s with no traffic: the CPU
/// each write costs each node (the data plane idle, so all of it is the
/// write's).
async fn write_cost(nodes: &[Node], label: &str) -> Result<(), BoxError> {
    let admin = nodes[0].admin;
    let committed = batches(admin).await;
    let before: Vec<Duration> = nodes.iter().map(|n| cpu_time(n.proc.0.id())).collect();
    let (stats, _) = writer_thread(admin, 5).join().map_err(|_| "the writers panicked")??;
    let (w, b) = batches(admin).await;
    let per_batch = (w - committed.0) / (b - committed.1).max(1.0);
    let writes = stats.latencies.len().max(1) as f64;
    let per_node: Vec<String> = nodes
        .iter()
        .zip(before)
        .map(|(n, b)| format!("{:.2}", ms(cpu_time(n.proc.0.id()).saturating_sub(b)) / writes))
        .collect();
    println!(
        "write cost {label}: 200 writes/s for 5 s, no traffic: CPU per write {} ms (node{} written through first); \
         {per_batch:.1} writes per commit",
        per_node.join(" / "),
        if nodes.len() > 1 { "s; the one" } else { "" }
    );
    Ok(())
}

/// The sum of a metric's samples on a node's admin `/metrics` (0 when absent).
async fn metric(admin: u16, name: &str) -> f64 {
    let url = format!("http://127.0.0.1:{admin}/metrics");
    let Ok(r) = reqwest::get(&url).await else { return 0.0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Batches that found no idle CPU in time (`write::IDLE_WAIT`).
const RAISED: &str = "pingora_config_admin_write_batches_raised_total";

/// Writes and group-commit batches the node committed so far.
async fn batches(admin: u16) -> (f64, f64) {
    (
        metric(admin, "pingora_config_admin_writes_total").await,
        metric(admin, "pingora_config_admin_write_batches_total").await,
    )
}

/// The open-loop writers on a thread of their own. The writing client
/// stands for a business system on another machine: it runs at the
/// priority of the gateway's control plane, so that on a small machine its
/// own CPU (gRPC and JSON encoding) does not count against the data plane.
fn writer_thread(admin: u16, seconds: u64) -> std::thread::JoinHandle<Result<(WriteStats, Duration), BoxError>> {
    switched_writer_thread(admin, seconds, std::sync::Arc::default())
}

/// [`writer_thread`], turned on and off by `switch`.
fn switched_writer_thread(
    admin: u16,
    seconds: u64,
    switch: std::sync::Arc<Switch>,
) -> std::thread::JoinHandle<Result<(WriteStats, Duration), BoxError>> {
    std::thread::spawn(move || -> Result<(WriteStats, Duration), BoxError> {
        gateway::server::control_plane_thread();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let cpu = thread_cpu_time();
        let result = rt.block_on(async move {
            let ch = Channel::from_shared(format!("http://127.0.0.1:{admin}"))?.connect().await?;
            open_loop_writes(ResourceServiceClient::new(ch), seconds, switch).await
        });
        if let Ok((stats, _)) = &result {
            let per_write =
                (thread_cpu_time().saturating_sub(cpu)).as_secs_f64() * 1000.0 / stats.latencies.len().max(1) as f64;
            println!("  (the writing client's own CPU: {per_write:.2} ms per write, gRPC and JSON encoding)");
        }
        result
    })
}

/// CPU time (user + system) of the calling thread, from /proc.
fn thread_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else { return Duration::ZERO };
    parse_cpu_time(&stat)
}

/// 200 writes/s through the first node for `seconds` while wrk loads it,
/// against wrk alone before and after (their mean, so that a machine
/// getting busier or quieter during the run does not read as the writes'
/// effect).
async fn sustained(nodes: &[Node], seconds: u64, label: &str, wrk_cpus: Option<&'static str>) -> Result<(), BoxError> {
    let mut res = api(&nodes[0]).await?;
    let bench: v1::Route = from_json(serde_json::json!({ "id": "bench", "uris": ["/bench"], "upstream_id": "u" }))?;
    res.create_route(v1::CreateRouteRequest { route: Some(bench) }).await?;
    let port = nodes[0].port;
    let admin = nodes[0].admin;
    let baseline_secs = (seconds / 3).max(5);
    let pid = nodes[0].proc.0.id();
    let (cp_start, started) = (control_plane_cpu(pid), Instant::now());
    let (before_rps, before_failed) = tokio::task::spawn_blocking(move || wrk(port, baseline_secs, wrk_cpus)).await??;
    // The control plane's own pace without writes (health checks, the
    // store's housekeeping), to take off what it uses with them.
    let idle_rate = control_plane_since(pid, &cp_start).as_secs_f64() / started.elapsed().as_secs_f64();
    let committed = batches(admin).await;
    let raised_before = metric(admin, RAISED).await;
    let (cp_start, started) = (control_plane_cpu(pid), Instant::now());
    let load = tokio::task::spawn_blocking(move || wrk(port, seconds, wrk_cpus));
    let writes = writer_thread(admin, seconds);
    let (rps, failed) = load.await??;
    let (mut stats, elapsed) = writes.join().map_err(|_| "the writers panicked")??;
    let window = started.elapsed().as_secs_f64();
    let cp_writes = (control_plane_since(pid, &cp_start).as_secs_f64() - idle_rate * window).max(0.0);
    let (w, b) = batches(admin).await;
    let per_batch = (w - committed.0) / (b - committed.1).max(1.0);
    let raised = metric(admin, RAISED).await - raised_before;
    let (after_rps, after_failed) = tokio::task::spawn_blocking(move || wrk(port, baseline_secs, wrk_cpus)).await??;
    let base_rps = (before_rps + after_rps) / 2.0;
    let writes = stats.latencies.len();
    let rate = writes as f64 / elapsed.as_secs_f64();
    stats.latencies.sort();
    println!(
        "sustained {label}: {writes} writes due at 200/s over {seconds} s by {WRITERS} writers: {rate:.0}/s reached, \
         write latency (from when due) p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} failed, {} conflicts; \
         {per_batch:.1} writes per commit, {raised:.0} of {:.0} commits raised from idle CPU; \
         under wrk -c16: failed requests {failed}; {rps:.0} req/s vs {base_rps:.0} req/s without writes ({:+.1}%; \
         {before_rps:.0} before and {after_rps:.0} after, {} failed)",
        ms(percentile(&stats.latencies, 0.5)),
        ms(percentile(&stats.latencies, 0.99)),
        ms(stats.latencies.last().copied().unwrap_or_default()),
        stats.failed,
        stats.conflicts,
        b - committed.1,
        (rps / base_rps - 1.0) * 100.0,
        before_failed + after_failed,
    );
    // What the writes cost the node measured, beside the data plane: the
    // drop above is mostly this share of its CPU (bench/README.md,
    // "Session 12" and "Session 13").
    println!(
        "  (the node's control plane under load: {:.2} ms CPU per write, {:.1}% of a CPU, above its {:.1}% without writes)",
        cp_writes * 1000.0 / writes.max(1) as f64,
        cp_writes / window * 100.0,
        idle_rate * 100.0,
    );
    interleaved(admin, port, wrk_cpus).await
}

/// The req/s drop again, in short rounds of wrk with the writes off and on
/// in the order off, on, on, off, ... (so that a machine getting busier or
/// quieter over the minute cancels out rather than reading as the writes'
/// effect): the median of each against the other. On a shared host the
/// before/after baselines of [`sustained`] drift by up to 20%.
async fn interleaved(admin: u16, port: u16, wrk_cpus: Option<&'static str>) -> Result<(), BoxError> {
    const ROUNDS: usize = 12;
    const ROUND_SECS: u64 = 4;
    let switch = std::sync::Arc::new(Switch::default());
    switch.paused.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = switched_writer_thread(admin, 3600, switch.clone());
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let mut failed = 0;
    for i in 0..ROUNDS {
        let writing = matches!(i % 4, 1 | 2);
        switch.paused.store(!writing, std::sync::atomic::Ordering::Relaxed);
        // Let a backlog of writes drain, or the writes get going.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (rps, f) = tokio::task::spawn_blocking(move || wrk(port, ROUND_SECS, wrk_cpus)).await??;
        failed += f;
        if writing { on.push(rps) } else { off.push(rps) }
    }
    switch.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (stats, _) = writes.join().map_err(|_| "the writers panicked")??;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!(
        "  interleaved, {ROUNDS} rounds of {ROUND_SECS} s (writes off, on, on, off, ...): median {m_on:.0} req/s with \
         writes vs {m_off:.0} without ({:+.1}%); {} writes, {} failed, {} conflicts; failed requests {failed}",
        (m_on / m_off - 1.0) * 100.0,
        stats.latencies.len(),
        stats.failed,
        stats.conflicts,
    );
    Ok(())
}

fn etcd(dir: &Path, cpus: Option<&str>) -> Result<(Proc, u16), BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/etcd.sh");
    if !Command::new(&script).arg("install").status()?.success() {
        return Err("scripts/etcd.sh install failed".into());
    }
    let (client, peer) = (free_port()?, free_port()?);
    let log = std::fs::File::create(dir.join("etcd.log"))?;
    let child = pinned(&script, cpus)
        .args(["run", &dir.join("etcd").display().to_string(), &client.to_string(), &peer.to_string()])
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    let proc = Proc(child);
    wait_port(client, "etcd")?;
    std::thread::sleep(Duration::from_millis(500));
    Ok((proc, client))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let binary = PathBuf::from(args.next().ok_or("usage: bench_propagation GATEWAY_BINARY [writes] [seconds]")?);
    let writes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let seconds: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(30);
    let tmp = std::env::temp_dir().join(format!("bench-propagation-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let upstream_port = upstream().await?;
    println!("bench-propagation: {} CPU(s)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    // BENCH_STORES=file or =etcd runs one phase only.
    let stores = std::env::var("BENCH_STORES").unwrap_or_default();
    let runs = |store: &str| stores.is_empty() || stores.split(',').any(|s| s.trim() == store);
    if runs("file") {
        let file = "  file: { path: $DIR/config.yaml }\n";
        let nodes = vec![start_node(&binary, &tmp, "file", file, 2, None)?];
        propagation(&nodes, upstream_port, writes, "file store, 1 node").await?;
        write_cost(&nodes, "file store, 1 node").await?;
        if seconds > 0 {
            sustained(&nodes, seconds, "file store, 1 node", None).await?;
        }
    }
    if runs("etcd") {
        // Three nodes and etcd stand for separate machines: on a machine
        // with 2 to 3 CPUs, the node written through and wrk get CPU 0, and
        // etcd, the other two nodes and this driver (the writing client)
        // CPU 1, so that the other nodes compiling every change do not take
        // the CPU of the node measured (BENCH_PIN=0: no pinning). The
        // baseline is measured under the same pinning.
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let pin = std::env::var("BENCH_PIN").map(|v| v != "0").unwrap_or(true)
            && (2..=3).contains(&cpus)
            && Command::new("taskset").arg("-V").output().is_ok_and(|o| o.status.success());
        let (measured, others) = if pin { (Some("0"), Some("1")) } else { (None, None) };
        if pin {
            let me = std::process::id().to_string();
            Command::new("taskset").args(["-a", "-cp", "1", &me]).output()?;
            println!(
                "etcd phase: node written through and wrk on CPU 0; etcd, the other nodes and the writers on CPU 1"
            );
        }
        let (_etcd, port) = etcd(&tmp, others)?;
        let store =
            format!("  etcd: {{ endpoints: [\"http://127.0.0.1:{port}\"], prefix: /bench, cache_dir: $DIR/cache }}\n");
        let nodes = vec![
            start_node(&binary, &tmp, "etcd-a", &store, 2, measured)?,
            start_node(&binary, &tmp, "etcd-b", &store, 1, others)?,
            start_node(&binary, &tmp, "etcd-c", &store, 1, others)?,
        ];
        propagation(&nodes, upstream_port, writes, "etcd, 3 nodes").await?;
        write_cost(&nodes, "etcd, 3 nodes").await?;
        if seconds > 0 {
            sustained(&nodes, seconds, "etcd, 3 nodes (wrk on the node written through)", measured).await?;
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
