//! Highly available Redis deployments of the tests' own, on free loopback ports, stopped
//! when dropped: a 3-master + 3-replica [`RedisCluster`] (or 3 masters alone, for
//! loadgen's comparison with one Redis) and a Sentinel-managed [`RedisSentinel`]
//! (1 master, 1 replica, 3 Sentinels). Both are tuned to fail over
//! in about a second (`cluster-node-timeout 1000`, `down-after-milliseconds 1000`), so
//! failover tests stay short. They drive `redis-server` and `redis-cli` (the Debian
//! `redis-server` package, which `scripts/test.sh` installs).

use crate::{free_port, scratch_dir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process (a node or a Sentinel).
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, args: &[String]) -> Node {
        let child = Command::new("redis-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (scripts/test.sh installs it)");
        let node = Node {
            port,
            child: Some(child),
        };
        wait_until(
            Duration::from_secs(10),
            &format!("port {port} answers"),
            || cli(port, &["PING"]).is_some_and(|out| out.contains("PONG")),
        );
        node
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `redis-cli -p PORT ARGS…`; its output, if it ran.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn node_args(port: u16, dir: &Path) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir.display().to_string(),
        // A replica syncs at once (the default waits 5 s for more replicas), so it is
        // ready to take over as soon as the deployment has started.
        "--repl-diskless-sync-delay",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A cluster-mode node on a free port, with its own folder under `dir`.
fn cluster_node(dir: &Path) -> Node {
    let port = free_port();
    let node_dir = dir.join(port.to_string());
    std::fs::create_dir_all(&node_dir).expect("a node folder");
    let mut args = node_args(port, &node_dir);
    args.extend(
        [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    Node::spawn(port, &args)
}

/// A Redis Cluster of 3 masters, each with one replica ([`RedisCluster::start`]) or none.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: PathBuf,
}

impl RedisCluster {
    /// 3 masters, each with one replica: what a failover needs.
    pub fn start() -> RedisCluster {
        RedisCluster::with_replicas(1)
    }

    /// A Redis Cluster of 3 masters and no replicas: like one `redis-server`, every
    /// write is made once (loadgen's like-for-like comparison with one Redis).
    pub fn unreplicated() -> RedisCluster {
        RedisCluster::with_replicas(0)
    }

    /// 3 masters, each with `replicas` replicas.
    fn with_replicas(replicas: usize) -> RedisCluster {
        let dir = scratch_dir("redis-cluster");
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            nodes.push(cluster_node(&dir));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let replicas_arg = replicas.to_string();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", &replicas_arg, "--cluster-yes"]);
        let created = cli(nodes[0].port, &create);
        assert!(created.is_some(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_healthy(Duration::from_secs(30));
        // A replica that never synced is not allowed to take over: wait for all of them.
        wait_until(Duration::from_secs(30), "every replica in sync", || {
            cluster
                .nodes
                .iter()
                .filter_map(|n| cli(n.port, &["INFO", "replication"]))
                .filter(|info| info.contains("master_link_status:up"))
                .count()
                == 3 * replicas
        });
        cluster
    }

    /// One cluster-mode master serving all 16 384 slots. Through a plain `redis://` URL
    /// ([`RedisCluster::node_url`]) it answers every command whose keys share a slot, as a
    /// slot-aware proxy in front of a Cluster does, and refuses a script whose keys do
    /// not (`CROSSSLOT`).
    pub fn one_master() -> RedisCluster {
        let dir = scratch_dir("redis-one-master");
        let node = cluster_node(&dir);
        let added = cli(node.port, &["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        assert!(
            added.is_some_and(|out| out.contains("OK")),
            "CLUSTER ADDSLOTSRANGE failed"
        );
        let cluster = RedisCluster {
            nodes: vec![node],
            _dir: dir,
        };
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    /// The ids of the nodes' processes that run (loadgen reads their CPU time).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(Node::pid).collect()
    }

    /// A plain `redis://` URL of the first node.
    pub fn node_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.nodes[0].port)
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Waits until every live node reports `cluster_state:ok`.
    pub fn wait_healthy(&self, limit: Duration) {
        wait_until(limit, "cluster_state:ok on every live node", || {
            self.is_healthy()
        });
    }

    /// Whether every live node reports `cluster_state:ok`.
    pub fn is_healthy(&self) -> bool {
        self.live_ports().iter().all(|&port| {
            cli(port, &["CLUSTER", "INFO"]).is_some_and(|info| info.contains("cluster_state:ok"))
        }) && self.master_for_slot(0).is_some()
    }

    /// The live master serving `slot`, by its port.
    pub fn master_for_slot(&self, slot: u16) -> Option<u16> {
        let ports = self.live_ports();
        let nodes = cli(*ports.first()?, &["CLUSTER", "NODES"])?;
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                return None;
            }
            let port: u16 = fields[1].split(['@', ':']).nth(1)?.parse().ok()?;
            let serves = fields[8..].iter().any(|range| {
                let (low, high) = range.split_once('-').unwrap_or((range, range));
                matches!((low.parse::<u16>(), high.parse::<u16>()), (Ok(l), Ok(h)) if (l..=h).contains(&slot))
            });
            (serves && ports.contains(&port)).then_some(port)
        })
    }

    /// The hash slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        let port = self.live_ports()[0];
        cli(port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|out| out.trim().parse().ok())
            .expect("CLUSTER KEYSLOT")
    }

    /// Kills (as a crash) the master serving `key`; returns its port.
    pub fn kill_master_of(&mut self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        let port = self.master_for_slot(slot).expect("a master for the slot");
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.kill();
        }
        port
    }

    /// Runs a command on the master serving `key` (for tests that look inside).
    pub fn command_for_key(&self, key: &str, args: &[&str]) -> Option<String> {
        let port = self.master_for_slot(self.slot_of(key))?;
        cli(port, args)
    }
}

/// A master, its replica and three Sentinels watching them under the name `mymaster`.
pub struct RedisSentinel {
    master: Node,
    _replica: Node,
    sentinels: Vec<Node>,
    _dir: PathBuf,
}

pub const SENTINEL_MASTER_NAME: &str = "mymaster";

impl RedisSentinel {
    pub fn start() -> RedisSentinel {
        let dir = scratch_dir("redis-sentinel");
        let master_port = free_port();
        let master_dir = dir.join("master");
        std::fs::create_dir_all(&master_dir).expect("a folder");
        let master = Node::spawn(master_port, &node_args(master_port, &master_dir));
        let replica_port = free_port();
        let replica_dir = dir.join("replica");
        std::fs::create_dir_all(&replica_dir).expect("a folder");
        let mut args = node_args(replica_port, &replica_dir);
        args.extend([
            "--replicaof".to_string(),
            "127.0.0.1".to_string(),
            master_port.to_string(),
        ]);
        let replica = Node::spawn(replica_port, &args);
        wait_until(Duration::from_secs(10), "the replica in sync", || {
            cli(replica_port, &["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let sentinel_dir = dir.join(format!("sentinel-{i}"));
            std::fs::create_dir_all(&sentinel_dir).expect("a folder");
            let conf = sentinel_dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER_NAME} 1000\n\
                     sentinel failover-timeout {SENTINEL_MASTER_NAME} 10000\n\
                     sentinel parallel-syncs {SENTINEL_MASTER_NAME} 1\n",
                    dir = sentinel_dir.display()
                ),
            )
            .expect("writing sentinel.conf");
            sentinels.push(Node::spawn(
                port,
                &[conf.display().to_string(), "--sentinel".to_string()],
            ));
        }
        let sentinel = RedisSentinel {
            master,
            _replica: replica,
            sentinels,
            _dir: dir,
        };
        // Every Sentinel knows the replica and the two other Sentinels before any test
        // relies on a failover.
        for s in &sentinel.sentinels {
            let port = s.port;
            wait_until(Duration::from_secs(30), "sentinels see each other", || {
                let replicas = cli(port, &["SENTINEL", "REPLICAS", SENTINEL_MASTER_NAME]);
                let peers = cli(port, &["SENTINEL", "SENTINELS", SENTINEL_MASTER_NAME]);
                replicas.is_some_and(|r| r.contains(&replica_port.to_string()))
                    && peers.is_some_and(|p| p.matches("127.0.0.1").count() >= 2)
            });
        }
        sentinel
    }

    /// The ids of its processes that run, Sentinels included (loadgen reads their CPU
    /// time).
    pub fn pids(&self) -> Vec<u32> {
        [&self.master, &self._replica]
            .into_iter()
            .chain(&self.sentinels)
            .filter_map(Node::pid)
            .collect()
    }

    pub fn url(&self) -> String {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!(
            "redis+sentinel://{}/{SENTINEL_MASTER_NAME}",
            sentinels.join(",")
        )
    }

    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    /// The master's port as the Sentinels report it now.
    pub fn reported_master(&self) -> Option<u16> {
        let out = cli(
            self.sentinels[0].port,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER_NAME],
        )?;
        out.lines().nth(1)?.trim().parse().ok()
    }

    /// Kills the master (as a crash).
    pub fn kill_master(&mut self) {
        self.master.kill();
    }
}
