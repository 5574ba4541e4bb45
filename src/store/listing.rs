//! One shape for the program's lists of what needs someone (the state home's cards): each
//! owner of a table answers for its own rows in this shape, and the home puts them side by side.

/// A page of a list: the first `limit` rows after `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub limit: i64,
    pub offset: i64,
}

/// One thing that needs someone: what it is, where, since when.
#[derive(Debug, Clone)]
pub struct Attention {
    /// The thing's own id or key, for its link (an excursion id, a serial, an order id…).
    pub key: String,
    pub location_code: String,
    /// The place's name, when the owner knows it.
    pub place: Option<String>,
    /// One line: what it is.
    pub what: String,
    /// Since when (epoch ms): started, submitted, last heard…
    pub since: Option<i64>,
    /// A date the thing is due or expires (`YYYY-MM-DD`).
    pub due: Option<String>,
    /// Needs someone first: unacknowledged, urgent, under 30 days.
    pub first: bool,
}

/// How many there are in all, and one page of them.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub total: i64,
    pub rows: Vec<Attention>,
}
