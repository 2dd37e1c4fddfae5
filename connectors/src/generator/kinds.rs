//! The event kinds the generator makes, each with its schema and its anomalies.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, StringBuilder,
    TimestampNanosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::rng::Rng;

/// What the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP`.
    Sensors,
    /// `account_id BIGINT, amount DOUBLE, ts TIMESTAMP`: money paid.
    Payments,
    /// `account_id BIGINT, amount DOUBLE, ts TIMESTAMP`: money owed.
    Dues,
    /// `user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN,
    /// ts TIMESTAMP`: anomalies are bursts of failures and logins from a new device.
    Logins,
    /// `city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP`: incidents reported in a
    /// city; anomalies are bursts of high and critical ones.
    CityEvents,
    /// `user_id TEXT, amount DOUBLE, ts TIMESTAMP`: money sent by the users of `logins`;
    /// anomalies are transfers over 1,000, and some of exactly 1,000 (the boundary).
    Transfers,
    /// `user_id TEXT, page TEXT, ts TIMESTAMP`: pages the users of `logins` view.
    Clicks,
    /// Nexmark's people: `id BIGINT, name TEXT, city TEXT, ts TIMESTAMP`, ids from 1.
    Persons,
    /// Nexmark's auctions: `id BIGINT, seller BIGINT, category BIGINT, ts TIMESTAMP`, ids
    /// from 1, sellers among the first `keys` people.
    Auctions,
    /// Nexmark's bids: `auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP` on the
    /// first `keys` auctions; anomalies are bids on the three hot auctions 1 to 3.
    Bids,
}

/// The cities of `city_events`, as many as `keys` asks (at most these).
const CITIES: [&str; 8] = [
    "amsterdam",
    "berlin",
    "lisbon",
    "madrid",
    "oslo",
    "paris",
    "rome",
    "vienna",
];

impl Kind {
    /// Parses `kind = '...'`.
    pub fn parse(name: &str) -> Option<Kind> {
        match name.to_ascii_lowercase().as_str() {
            "sensors" => Some(Kind::Sensors),
            "payments" => Some(Kind::Payments),
            "dues" => Some(Kind::Dues),
            "logins" => Some(Kind::Logins),
            "city_events" => Some(Kind::CityEvents),
            "transfers" => Some(Kind::Transfers),
            "clicks" => Some(Kind::Clicks),
            "persons" => Some(Kind::Persons),
            "auctions" => Some(Kind::Auctions),
            "bids" => Some(Kind::Bids),
            _ => None,
        }
    }

    /// The columns of this kind.
    pub fn schema(self) -> SchemaRef {
        let ts = Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true);
        let text = |name| Field::new(name, DataType::Utf8, true);
        let number = |name| Field::new(name, DataType::Int64, true);
        let fields = match self {
            Kind::Sensors => vec![
                Field::new("sensor_id", DataType::Utf8, true),
                Field::new("temperature", DataType::Float64, true),
                Field::new("humidity", DataType::Float64, true),
                ts,
            ],
            Kind::Payments | Kind::Dues => vec![
                Field::new("account_id", DataType::Int64, true),
                Field::new("amount", DataType::Float64, true),
                ts,
            ],
            Kind::Logins => vec![
                text("user_id"),
                text("event_type"),
                text("ip"),
                text("device_id"),
                Field::new("new_device", DataType::Boolean, true),
                ts,
            ],
            Kind::CityEvents => vec![
                Field::new("city", DataType::Utf8, true),
                Field::new("event_type", DataType::Utf8, true),
                Field::new("severity", DataType::Utf8, true),
                ts,
            ],
            Kind::Transfers => vec![
                text("user_id"),
                Field::new("amount", DataType::Float64, true),
                ts,
            ],
            Kind::Clicks => vec![text("user_id"), text("page"), ts],
            Kind::Persons => vec![number("id"), text("name"), text("city"), ts],
            Kind::Auctions => vec![number("id"), number("seller"), number("category"), ts],
            Kind::Bids => vec![number("auction"), number("bidder"), number("price"), ts],
        };
        Arc::new(Schema::new(fields))
    }

    /// The columns as SQL, for declaring a source of this kind.
    pub fn columns_sql(self) -> &'static str {
        match self {
            Kind::Sensors => "sensor_id TEXT, temperature DOUBLE, humidity DOUBLE, ts TIMESTAMP",
            Kind::Payments | Kind::Dues => "account_id BIGINT, amount DOUBLE, ts TIMESTAMP",
            Kind::Logins => {
                "user_id TEXT, event_type TEXT, ip TEXT, device_id TEXT, new_device BOOLEAN, \
                 ts TIMESTAMP"
            }
            Kind::CityEvents => "city TEXT, event_type TEXT, severity TEXT, ts TIMESTAMP",
            Kind::Transfers => "user_id TEXT, amount DOUBLE, ts TIMESTAMP",
            Kind::Clicks => "user_id TEXT, page TEXT, ts TIMESTAMP",
            Kind::Persons => "id BIGINT, name TEXT, city TEXT, ts TIMESTAMP",
            Kind::Auctions => "id BIGINT, seller BIGINT, category BIGINT, ts TIMESTAMP",
            Kind::Bids => "auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP",
        }
    }

    /// The column identifying the sensor, account or user: what rules group by.
    pub fn key_column(self) -> &'static str {
        match self {
            Kind::Sensors => "sensor_id",
            Kind::Payments | Kind::Dues => "account_id",
            Kind::Logins | Kind::Transfers | Kind::Clicks => "user_id",
            Kind::CityEvents => "city",
            Kind::Persons | Kind::Auctions => "id",
            Kind::Bids => "auction",
        }
    }

    /// The name in `kind = '...'`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sensors => "sensors",
            Kind::Payments => "payments",
            Kind::Dues => "dues",
            Kind::Logins => "logins",
            Kind::CityEvents => "city_events",
            Kind::Transfers => "transfers",
            Kind::Clicks => "clicks",
            Kind::Persons => "persons",
            Kind::Auctions => "auctions",
            Kind::Bids => "bids",
        }
    }

    /// A stream salt, so payments and dues with one seed are different streams.
    pub fn salt(self) -> u64 {
        match self {
            Kind::Sensors => 1,
            Kind::Payments => 2,
            Kind::Dues => 3,
            Kind::Logins => 4,
            Kind::CityEvents => 5,
            Kind::Transfers => 6,
            Kind::Clicks => 7,
            Kind::Persons => 8,
            Kind::Auctions => 9,
            Kind::Bids => 10,
        }
    }
}

/// Knobs that shape the values.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Distinct sensors, accounts or users.
    pub keys: u64,
    /// Share of anomalous events.
    pub anomaly_ratio: f64,
}

/// Per-kind state carried between batches (e.g. a brute-force burst in progress).
#[derive(Debug, Default)]
pub struct KindState {
    burst_user: u64,
    burst_left: u32,
    /// The (user, device) pairs `logins` has used, so a device is new only the first time.
    known_devices: HashSet<(u64, u64)>,
    /// Events made so far: the next person's or auction's id is one more.
    made: i64,
}

/// Builds the columns of `n` events with event times `ts`, in `Kind::schema` order.
pub fn generate(
    kind: Kind,
    shape: &Shape,
    rng: &mut Rng,
    state: &mut KindState,
    ts: Vec<i64>,
) -> Vec<ArrayRef> {
    let n = ts.len();
    let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(ts));
    match kind {
        Kind::Sensors => {
            let mut ids = StringBuilder::with_capacity(n, n * 11);
            let mut temps = Float64Builder::with_capacity(n);
            let mut hums = Float64Builder::with_capacity(n);
            for _ in 0..n {
                ids.append_value(format!("sensor-{:04}", rng.below(shape.keys)));
                let (mut t, mut h) = (rng.range(12.0, 28.0), rng.range(30.0, 80.0));
                if rng.chance(shape.anomaly_ratio) {
                    match rng.below(4) {
                        0 => t = rng.range(35.5, 45.0),
                        1 => t = rng.range(-5.0, 4.5),
                        2 => t = rng.range(30.5, 35.0),
                        _ => h = rng.range(85.5, 99.0),
                    }
                }
                temps.append_value(round1(t));
                hums.append_value(round1(h));
            }
            vec![
                Arc::new(ids.finish()),
                Arc::new(temps.finish()),
                Arc::new(hums.finish()),
                ts,
            ]
        }
        Kind::Payments | Kind::Dues => {
            let mut accounts = Int64Builder::with_capacity(n);
            let mut amounts = Float64Builder::with_capacity(n);
            for _ in 0..n {
                accounts.append_value(1 + rng.below(shape.keys) as i64);
                let mut amount = rng.range(20.0, 180.0);
                if kind == Kind::Dues && rng.chance(shape.anomaly_ratio) {
                    amount = rng.range(300.0, 600.0);
                }
                amounts.append_value((amount * 100.0).round() / 100.0);
            }
            vec![Arc::new(accounts.finish()), Arc::new(amounts.finish()), ts]
        }
        Kind::Logins => logins(shape, rng, state, n, ts),
        Kind::CityEvents => city_events(shape, rng, n, ts),
        Kind::Transfers => transfers(shape, rng, n, ts),
        Kind::Clicks => clicks(shape, rng, n, ts),
        Kind::Persons => persons(rng, state, n, ts),
        Kind::Auctions => auctions(shape, rng, state, n, ts),
        Kind::Bids => bids(shape, rng, n, ts),
    }
}

/// Logins and what users do after: bursts of failures (brute force) and logins from a
/// device the user has not used (new devices).
fn logins(
    shape: &Shape,
    rng: &mut Rng,
    state: &mut KindState,
    n: usize,
    ts: ArrayRef,
) -> Vec<ArrayRef> {
    const TYPES: [&str; 5] = [
        "login_success",
        "login_failed",
        "search",
        "view_item",
        "logout",
    ];
    let mut users = StringBuilder::with_capacity(n, n * 8);
    let mut types = StringBuilder::with_capacity(n, n * 12);
    let mut ips = StringBuilder::with_capacity(n, n * 12);
    let mut devices = StringBuilder::with_capacity(n, n * 12);
    let mut new_devices = BooleanBuilder::with_capacity(n);
    for _ in 0..n {
        if state.burst_left == 0 && rng.chance(shape.anomaly_ratio) {
            state.burst_user = rng.below(shape.keys);
            state.burst_left = 8;
        }
        let (user, event) = if state.burst_left > 0 && rng.chance(0.5) {
            state.burst_left -= 1;
            (state.burst_user, "login_failed")
        } else {
            let event = match rng.below(20) {
                0 => TYPES[1],
                1..=5 => TYPES[0],
                6..=12 => TYPES[2],
                13..=17 => TYPES[3],
                _ => TYPES[4],
            };
            (rng.below(shape.keys), event)
        };
        let (device, new) = login_device(shape, rng, state, user);
        users.append_value(format!("user-{user:03}"));
        types.append_value(event);
        ips.append_value(format!("10.0.{}.{}", user % 256, 1 + rng.below(254)));
        devices.append_value(format!("dev-{user:03}-{device}"));
        new_devices.append_value(new);
    }
    vec![
        Arc::new(users.finish()),
        Arc::new(types.finish()),
        Arc::new(ips.finish()),
        Arc::new(devices.finish()),
        Arc::new(new_devices.finish()),
        ts,
    ]
}

/// A user's device and whether it is new: one of the user's three usual devices (new the
/// first time), or, as an anomaly, one drawn from a million, taken as never seen (those are
/// not remembered, so the set of known devices stays bounded by three per user).
fn login_device(shape: &Shape, rng: &mut Rng, state: &mut KindState, user: u64) -> (u64, bool) {
    const USUAL: u64 = 3;
    if rng.chance(shape.anomaly_ratio) {
        return (USUAL + rng.below(1_000_000), true);
    }
    let device = rng.below(USUAL);
    (device, state.known_devices.insert((user, device)))
}

/// Transfers: mostly under 900; an anomaly is over 1,000, or one in ten exactly 1,000.
fn transfers(shape: &Shape, rng: &mut Rng, n: usize, ts: ArrayRef) -> Vec<ArrayRef> {
    let mut users = StringBuilder::with_capacity(n, n * 8);
    let mut amounts = Float64Builder::with_capacity(n);
    for _ in 0..n {
        users.append_value(format!("user-{:03}", rng.below(shape.keys)));
        let amount = match (rng.chance(shape.anomaly_ratio), rng.below(10)) {
            (true, 0) => 1000.0,
            (true, _) => rng.range(1000.01, 5000.0),
            (false, _) => rng.range(5.0, 900.0),
        };
        amounts.append_value((amount * 100.0).round() / 100.0);
    }
    vec![Arc::new(users.finish()), Arc::new(amounts.finish()), ts]
}

/// Page views, for sessions of clicks.
fn clicks(shape: &Shape, rng: &mut Rng, n: usize, ts: ArrayRef) -> Vec<ArrayRef> {
    const PAGES: [&str; 5] = ["/", "/search", "/item", "/cart", "/checkout"];
    let mut users = StringBuilder::with_capacity(n, n * 8);
    let mut pages = StringBuilder::with_capacity(n, n * 8);
    for _ in 0..n {
        users.append_value(format!("user-{:03}", rng.below(shape.keys)));
        pages.append_value(PAGES[rng.below(PAGES.len() as u64) as usize]);
    }
    vec![Arc::new(users.finish()), Arc::new(pages.finish()), ts]
}

/// Ids `made + 1 ..= made + n`, counting them made.
fn next_ids(state: &mut KindState, n: usize) -> Int64Array {
    let first = state.made + 1;
    state.made += n as i64;
    Int64Array::from_iter_values(first..=state.made)
}

/// Nexmark's people, each registering once, in a city.
fn persons(rng: &mut Rng, state: &mut KindState, n: usize, ts: ArrayRef) -> Vec<ArrayRef> {
    const NAMES: [&str; 6] = ["alice", "bob", "carol", "dan", "erin", "frank"];
    let ids = next_ids(state, n);
    let mut names = StringBuilder::with_capacity(n, n * 10);
    let mut cities = StringBuilder::with_capacity(n, n * 8);
    for id in ids.values() {
        names.append_value(format!(
            "{} {id}",
            NAMES[rng.below(NAMES.len() as u64) as usize]
        ));
        cities.append_value(CITIES[rng.below(CITIES.len() as u64) as usize]);
    }
    vec![
        Arc::new(ids),
        Arc::new(names.finish()),
        Arc::new(cities.finish()),
        ts,
    ]
}

/// Nexmark's auctions, each opened by one of the first `keys` people.
fn auctions(
    shape: &Shape,
    rng: &mut Rng,
    state: &mut KindState,
    n: usize,
    ts: ArrayRef,
) -> Vec<ArrayRef> {
    let ids = next_ids(state, n);
    let sellers = Int64Array::from_iter_values((0..n).map(|_| 1 + rng.below(shape.keys) as i64));
    let categories = Int64Array::from_iter_values((0..n).map(|_| 10 + rng.below(5) as i64));
    vec![Arc::new(ids), Arc::new(sellers), Arc::new(categories), ts]
}

/// Nexmark's bids on the first `keys` auctions; an anomaly is a bid on a hot one (1 to 3).
fn bids(shape: &Shape, rng: &mut Rng, n: usize, ts: ArrayRef) -> Vec<ArrayRef> {
    let mut auction = Int64Builder::with_capacity(n);
    let mut bidder = Int64Builder::with_capacity(n);
    let mut price = Int64Builder::with_capacity(n);
    for _ in 0..n {
        let hot = rng.chance(shape.anomaly_ratio);
        let pool = if hot { 3 } else { shape.keys };
        auction.append_value(1 + rng.below(pool) as i64);
        bidder.append_value(1 + rng.below(shape.keys) as i64);
        price.append_value(1 + rng.below(10_000) as i64);
    }
    vec![
        Arc::new(auction.finish()),
        Arc::new(bidder.finish()),
        Arc::new(price.finish()),
        ts,
    ]
}

/// City incidents: mostly low and medium; an anomaly is a high or critical one.
fn city_events(shape: &Shape, rng: &mut Rng, n: usize, ts: ArrayRef) -> Vec<ArrayRef> {
    const TYPES: [&str; 5] = ["traffic", "fire", "flood", "power_outage", "noise"];
    let cities = (shape.keys as usize).clamp(1, CITIES.len()) as u64;
    let mut city = StringBuilder::with_capacity(n, n * 8);
    let mut types = StringBuilder::with_capacity(n, n * 8);
    let mut severity = StringBuilder::with_capacity(n, n * 6);
    for _ in 0..n {
        city.append_value(CITIES[rng.below(cities) as usize]);
        types.append_value(TYPES[rng.below(TYPES.len() as u64) as usize]);
        let level = match (rng.chance(shape.anomaly_ratio), rng.below(2)) {
            (true, 0) => "high",
            (true, _) => "critical",
            (false, 0) => "low",
            (false, _) => "medium",
        };
        severity.append_value(level);
    }
    vec![
        Arc::new(city.finish()),
        Arc::new(types.finish()),
        Arc::new(severity.finish()),
        ts,
    ]
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
