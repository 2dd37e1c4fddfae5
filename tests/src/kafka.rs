//! A real Kafka-protocol broker for tests: Tansu with in-memory storage on a free
//! 127.0.0.1 port, plus small clients to create topics, produce and read back.
//!
//! The broker binary is found through `VIGIL_TANSU_BIN`, then `PATH`, then `~/.cargo/bin`.
//! There is no fallback: without it the Kafka tests fail, saying how to install it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use vigil_connectors::kafka::KafkaSettings;

/// How to get the broker, printed when it is missing.
const INSTALL_HINT: &str = "Tansu 0.6.0 is needed for the Kafka tests. Install it with \
.ci/install-tansu (cargo install tansu --locked --version 0.6.0 --features dynostore), or \
point VIGIL_TANSU_BIN at a tansu binary.";

/// Brokers running at once: every test starts its own, and on a 2-core machine a dozen at
/// once would starve the timing the tests rely on (idle timeouts of a second).
const MAX_BROKERS: usize = 3;

static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A place among the [`MAX_BROKERS`] running brokers, released on drop.
struct Slot;

impl Slot {
    fn take() -> Self {
        let (count, freed) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= MAX_BROKERS {
            running = freed.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (count, freed) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
    _slot: Slot,
    relay: Option<Relay>,
    /// `127.0.0.1:port`.
    pub address: String,
}

/// A message read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partition read from.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Value, as text; `None` for a tombstone.
    pub value: Option<String>,
    /// Headers, as text.
    pub headers: Vec<(String, String)>,
}

/// The output of a windowed rule: each `window_start` with every value of column `count`
/// emitted for it, in the order read.
pub fn window_counts(
    records: &[Record],
    count: &str,
) -> std::collections::BTreeMap<String, Vec<i64>> {
    let mut windows: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for record in records {
        let value: serde_json::Value =
            serde_json::from_str(record.value.as_deref().expect("a value")).expect("JSON");
        let start = value["window_start"]
            .as_str()
            .expect("a window_start")
            .to_string();
        windows
            .entry(start)
            .or_default()
            .push(value[count].as_i64().expect("a count"));
    }
    windows
}

impl Record {
    /// The value of header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("VIGIL_TANSU_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"))
        .find(|p| p.is_file());
    let in_cargo = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo/bin/tansu"))
        .filter(|p| p.is_file());
    on_path
        .or(in_cargo)
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// The broker's log: under `VIGIL_TANSU_LOG_DIR` when set, else discarded.
fn log_file(port: u16) -> Stdio {
    match std::env::var_os("VIGIL_TANSU_LOG_DIR") {
        Some(dir) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(PathBuf::from(dir).join(format!("tansu-{port}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    }
}

/// Starts `tansu broker` on 127.0.0.1:`port`, storage in memory.
fn spawn(port: u16) -> Child {
    spawn_advertising(port, port)
}

/// Starts `tansu broker` on 127.0.0.1:`port`, telling clients to connect to `advertised`.
fn spawn_advertising(port: u16, advertised: u16) -> Child {
    let binary = tansu_binary();
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised = format!("tcp://127.0.0.1:{advertised}");
    Command::new(&binary)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdin(Stdio::null())
        .stdout(log_file(port))
        .stderr(log_file(port))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL_HINT}", binary.display()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl Broker {
    /// Starts a broker and waits until it answers metadata requests.
    pub fn start() -> Self {
        let slot = Slot::take();
        let port = free_port();
        let broker = Self {
            child: spawn(port),
            _slot: slot,
            address: format!("127.0.0.1:{port}"),
            relay: None,
        };
        broker.wait_ready();
        broker
    }

    /// Starts a broker that clients reach only through a relay the test can cut
    /// ([`Broker::cut`]), as a network outage would: the broker advertises the relay's port.
    pub fn start_relayed() -> Self {
        let slot = Slot::take();
        let (port, relay_port) = (free_port(), free_port());
        let child = spawn_advertising(port, relay_port);
        let relay = Relay::start(relay_port, port);
        let broker = Self {
            child,
            _slot: slot,
            address: format!("127.0.0.1:{relay_port}"),
            relay: Some(relay),
        };
        broker.wait_ready();
        broker
    }

    /// Cuts (`true`) or restores (`false`) the network between clients and a relayed broker.
    pub fn cut(&self, cut: bool) {
        self.relay
            .as_ref()
            .expect("a broker started with start_relayed")
            .cut(cut);
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker did not open its port"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let consumer: BaseConsumer = self.config().create().expect("a client");
        while consumer
            .fetch_metadata(None, Duration::from_secs(2))
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the broker does not answer metadata"
            );
        }
    }

    /// Settings for Vigil's Kafka connector.
    pub fn settings(&self) -> KafkaSettings {
        KafkaSettings {
            brokers: self.address.clone(),
        }
    }

    /// A client configuration for this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        config
    }

    /// Creates topics with `partitions` partitions each.
    pub async fn create_topics(&self, topics: &[&str], partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .expect("create topics");
        for result in results {
            result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
        }
    }

    /// A producer that waits for all replicas.
    pub fn producer(&self) -> FutureProducer {
        self.config()
            .set("acks", "all")
            .set("linger.ms", "0")
            .create()
            .expect("producer")
    }

    /// Produces messages `(partition, key, value)` in order and waits for each delivery.
    pub async fn produce(&self, topic: &str, messages: &[(i32, Option<&str>, &str)]) {
        let producer = self.producer();
        for (partition, key, value) in messages {
            let mut record = FutureRecord::<str, str>::to(topic)
                .partition(*partition)
                .payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(e, _)| panic!("producing to {topic}: {e}"));
        }
    }

    /// Produces a tombstone (a message with `key` and no value) and waits for its delivery.
    pub async fn produce_tombstone(&self, topic: &str, partition: i32, key: &str) {
        let record = FutureRecord::<str, str>::to(topic)
            .partition(partition)
            .key(key);
        self.producer()
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing a tombstone to {topic}: {e}"));
    }

    /// Every message now in `topic`, in (partition, offset) order.
    ///
    /// Reads up to the partitions' high watermarks, then on until nothing arrives for a
    /// while: Tansu 0.6.0 reports a partition's end as the base offset of its last record
    /// batch plus one, short of the real end when that batch holds several records.
    pub fn read_topic(&self, topic: &str) -> Vec<Record> {
        read_topic_at(&self.address, topic)
    }

    /// Waits until `topic` holds at least `count` messages; returns them all.
    pub async fn wait_for(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            // Reading blocks; keep it off the runtime the queries under test run on.
            let (address, name) = (self.address.clone(), topic.to_string());
            let records = tokio::task::spawn_blocking(move || read_topic_at(&address, &name))
                .await
                .expect("reading the topic");
            if records.len() >= count {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} has {} messages, expected {count}: {records:#?}",
                records.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Broker {
    /// The offsets consumer group `group` has committed on `topic`, by partition (partitions
    /// without a commit are left out).
    pub fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> std::collections::BTreeMap<i32, i64> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", group)
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let mut partitions = TopicPartitionList::new();
        for partition in metadata.topics()[0].partitions() {
            partitions.add_partition(topic, partition.id());
        }
        let committed = consumer
            .committed_offsets(partitions, Duration::from_secs(10))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`Broker::read_topic`] of the broker at `address`.
fn read_topic_at(address: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "vigil-tests-reader")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut assignment = TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for partition in metadata.topics()[0].partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(partition.id(), high);
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut records = Vec::new();
    let mut reached_at: Option<Instant> = None;
    loop {
        if reached_at.is_none()
            && ends.iter().all(|(partition, end)| {
                *end == 0
                    || records
                        .iter()
                        .any(|r: &Record| r.partition == *partition && r.offset + 1 >= *end)
            })
        {
            reached_at = Some(Instant::now());
        }
        // The reported ends may fall short of the last batch: read on a little.
        if reached_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        let Some(message) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let message = message.expect("a message");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        records.push(Record {
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(text),
            value: message.payload().map(text),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(text).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// A TCP relay from one local port to another that can be cut: while cut, open connections
/// are closed and new ones refused.
struct Relay {
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(listen: u16, target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", listen)).expect("relay port");
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_flag, open_list) = (Arc::clone(&cut), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut_flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = open_list.lock().unwrap_or_else(|e| e.into_inner());
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Self { cut, open }
    }

    fn cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for stream in self
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Copies bytes from `from` to `to` on a thread until either side closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
    });
}
