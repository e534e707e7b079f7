//! `redis-cluster`: starts a 3-master + 3-replica Redis Cluster on free loopback ports,
//! prints its `redis+cluster://` URL on one line, and stops it when its standard input
//! closes. `scripts/test.sh` runs the black-box suites on one such cluster (each test
//! server under a key prefix of its own) instead of starting a cluster per test.

use std::io::Read;

fn main() {
    let cluster = otp_server_blackbox::redis_cluster::RedisCluster::start();
    println!("{}", cluster.url());
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
}
