//! Output: Tables as aligned columns (kubectl's layout), objects as YAML or JSON.

use serde_json::Value;

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Columns, with the extra (priority > 0) ones.
    Wide,
    Yaml,
    Json,
    /// `kind.group/name` per object.
    Name,
}

/// Column headers and rows of a Table response, ready to align.
#[derive(Debug, Default)]
pub(crate) struct Grid {
    pub(crate) headers: Vec<String>,
    /// Which of the Table's columns are shown.
    shown: Vec<usize>,
    /// A leading NAMESPACE column, from each row's object metadata.
    namespace: bool,
    pub(crate) rows: Vec<Vec<String>>,
}

fn cell_text(value: &Value) -> String {
    match value {
        Value::Null => "<none>".into(),
        Value::String(s) if s.is_empty() => "<none>".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Grid {
    /// Headers from a Table's column definitions; `wide` shows priority > 0 columns too;
    /// `namespace` adds a leading NAMESPACE column.
    pub(crate) fn from_definitions(table: &Value, wide: bool, namespace: bool) -> Grid {
        let mut grid = Grid {
            namespace,
            ..Grid::default()
        };
        if namespace {
            grid.headers.push("NAMESPACE".into());
        }
        let definitions = table.get("columnDefinitions").and_then(Value::as_array);
        for (i, column) in definitions.into_iter().flatten().enumerate() {
            let priority = column.get("priority").and_then(Value::as_i64).unwrap_or(0);
            if priority > 0 && !wide {
                continue;
            }
            let name = column.get("name").and_then(Value::as_str).unwrap_or("");
            grid.headers.push(name.to_uppercase());
            grid.shown.push(i);
        }
        grid
    }

    /// Appends a Table's rows.
    pub(crate) fn add_rows(&mut self, table: &Value) {
        for row in table
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.rows.push(self.row_cells(row));
        }
    }

    /// One row's cells.
    pub(crate) fn row_cells(&self, row: &Value) -> Vec<String> {
        let cells = row.get("cells").and_then(Value::as_array);
        let mut out = Vec::new();
        if self.namespace {
            let ns = row
                .pointer("/object/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            out.push(ns.to_owned());
        }
        for &i in &self.shown {
            out.push(
                cells
                    .and_then(|c| c.get(i))
                    .map(cell_text)
                    .unwrap_or_else(|| "<none>".into()),
            );
        }
        out
    }

    /// Column widths over headers and rows.
    pub(crate) fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    /// The aligned text: headers, then rows, three spaces between columns.
    pub(crate) fn render(&self) -> String {
        let widths = self.widths();
        let mut out = line(&self.headers, &widths);
        for row in &self.rows {
            out.push_str(&line(row, &widths));
        }
        out
    }
}

/// One aligned line (the last column is not padded).
pub(crate) fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            out.push_str(cell);
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{cell:<width$}   "));
        }
    }
    out.push('\n');
    out
}

/// An object or list as YAML.
pub(crate) fn yaml(value: &Value) -> anyhow::Result<String> {
    Ok(stead_api::yaml::to_yaml(value)?)
}

/// An object or list as indented JSON.
pub(crate) fn json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Value {
        json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0},
                {"name": "Ready", "priority": 0},
                {"name": "Command", "priority": 1},
                {"name": "Age", "priority": 0},
            ],
            "rows": [
                {"cells": ["web", 3, "sleep", "5m"],
                 "object": {"metadata": {"name": "web", "namespace": "default"}}},
                {"cells": ["batch-runner", null, "sh", "2d"],
                 "object": {"metadata": {"name": "batch-runner", "namespace": "jobs"}}},
            ]
        })
    }

    #[test]
    fn tables_align_like_kubectl_and_hide_wide_columns() {
        let mut grid = Grid::from_definitions(&table(), false, false);
        grid.add_rows(&table());
        assert_eq!(
            grid.render(),
            "NAME           READY    AGE\nweb            3        5m\nbatch-runner   <none>   2d\n"
        );
        let mut wide = Grid::from_definitions(&table(), true, true);
        wide.add_rows(&table());
        let text = wide.render();
        assert!(
            text.starts_with("NAMESPACE   NAME           READY    COMMAND   AGE\n"),
            "{text}"
        );
        assert!(
            text.contains("\njobs        batch-runner   <none>   sh        2d\n"),
            "{text}"
        );
    }
}
