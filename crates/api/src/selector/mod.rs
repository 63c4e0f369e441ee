//! Selectors for list and watch: label selectors ([`Selector`], and the structured
//! [`LabelSelector`] used inside specs) and field selectors ([`FieldSelector`]).

mod field;
mod label;

pub use field::{Field, FieldRequirement, FieldSelector, FieldSelectorError, escape_value};
pub use label::{
    LabelSelector, LabelSelectorRequirement, Operator, Requirement, Selector, SelectorError,
};
