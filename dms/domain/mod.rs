//! The market-data domain: symbols, markets, intervals, bars, ranges, corporate actions and the
//! timestamp rules of DESIGN §1.
//!
//! Everything here is pure: no IO and no clock reads. Functions that need "now" take it as an
//! argument so that tests can pin it.

mod action;
mod bar;
mod calendar;
mod interval;
mod market;
mod range;
mod symbol;
pub mod time;

pub use action::{ActionKind, CorporateAction};
pub use bar::{Bar, BarError, SourceKind};
pub use calendar::{BarStarts, Calendar, Overrides, Session, Sessions};
pub use interval::Interval;
pub use market::Market;
pub use range::{RangeError, Tiling, TimeRange};
pub use symbol::{SeriesKey, Symbol, SymbolError};
