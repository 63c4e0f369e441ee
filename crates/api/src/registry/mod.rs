//! Kinds and their registry: [`Kind`] records (names, scope, versions, schemas, subresources,
//! printer columns), the [`KindRegistry`] that looks them up, and
//! [`CustomResourceDefinition`], through which users add kinds at run time.

mod crd;
mod json_path;
mod kind;
mod kind_registry;

pub use crd::{
    CRD_GROUP, CrdCondition, CrdError, CustomResourceDefinition, CustomResourceDefinitionSpec,
    CustomResourceDefinitionStatus, CustomResourceDefinitionVersion, CustomResourceSubresources,
    CustomResourceValidation,
};
pub use json_path::{JsonPath, JsonPathError};
pub use kind::{
    Kind, KindSource, KindVersion, Names, PrinterColumn, ScaleSubresource, Subresources,
};
pub use kind_registry::{KindRegistry, RegistryError};
