//! The hash map of the request path. std's SipHash costs more per lookup than the rest
//! of a route lookup; foldhash is several times cheaper and still seeded at random per
//! process, so keys a namespace user controls (hosts, endpoint addresses) cannot be
//! chosen to collide.
use std::collections::HashMap;

pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
