//! `stead kv`: a small etcdctl for people without one. Output follows etcdctl's simple
//! format (key and value on separate lines; `OK` for a put).

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use stead_server::pb;
use stead_server::pb::kv_client::KvClient;
use tonic::transport::Channel;

#[derive(Args)]
pub(crate) struct KvArgs {
    /// Server to talk to.
    #[arg(
        long,
        global = true,
        env = "STEAD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: String,
    #[command(subcommand)]
    command: KvCommand,
}

#[derive(Subcommand)]
enum KvCommand {
    /// Put a key.
    Put {
        key: String,
        value: String,
        /// Attach the key to this lease (hexadecimal id).
        #[arg(long)]
        lease: Option<String>,
        /// Print the previous key-value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Get a key or a range of keys.
    Get {
        key: String,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        #[arg(long)]
        from_key: bool,
        /// Read at this revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long, default_value_t = 0)]
        limit: i64,
        #[arg(long)]
        keys_only: bool,
        #[arg(long)]
        count_only: bool,
        #[arg(long)]
        print_value_only: bool,
    },
    /// Delete a key or a range of keys.
    Del {
        key: String,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        #[arg(long)]
        from_key: bool,
        #[arg(long)]
        prev_kv: bool,
    },
    /// Print every change to a key or range, from a revision on.
    Watch {
        key: String,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        /// Start at this revision (default: changes from now on).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long)]
        prev_kv: bool,
    },
    /// Run a transaction read from stdin in etcdctl's format: compares, a blank line,
    /// success ops, a blank line, failure ops.
    Txn,
    /// Compact history below a revision.
    Compact {
        revision: i64,
        #[arg(long)]
        physical: bool,
    },
}

/// The smallest key greater than every key with this prefix ("\0" when there is none).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn range_end(key: &str, end: Option<String>, prefix: bool, from_key: bool) -> Vec<u8> {
    if prefix {
        prefix_end(key.as_bytes())
    } else if from_key {
        vec![0]
    } else {
        end.map(String::into_bytes).unwrap_or_default()
    }
}

/// etcdctl's `printKV`: the key (unless `value_only`), then the value line, which is empty
/// for `--keys-only` reads.
fn print_kv(kv: &pb::mvccpb::KeyValue, value_only: bool) {
    if !value_only {
        println!("{}", String::from_utf8_lossy(&kv.key));
    }
    println!("{}", String::from_utf8_lossy(&kv.value));
}

async fn connect(endpoints: &str) -> anyhow::Result<Channel> {
    let first = endpoints.split(',').next().unwrap_or(endpoints);
    let url = if first.contains("://") {
        first.to_string()
    } else {
        format!("http://{first}")
    };
    Channel::from_shared(url.clone())
        .with_context(|| format!("bad endpoint {url}"))?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", status.message())
}

pub(crate) async fn run(args: KvArgs) -> anyhow::Result<()> {
    let channel = connect(&args.endpoints).await?;
    let mut kv = KvClient::new(channel.clone());
    match args.command {
        KvCommand::Put {
            key,
            value,
            lease,
            prev_kv,
        } => {
            let lease = match lease {
                Some(l) => i64::from_str_radix(&l, 16)
                    .with_context(|| format!("bad lease id {l:?} (hexadecimal expected)"))?,
                None => 0,
            };
            let resp = kv
                .put(pb::PutRequest {
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                    lease,
                    prev_kv,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("OK");
            if let Some(prev) = resp.prev_kv {
                print_kv(&prev, false);
            }
        }
        KvCommand::Get {
            key,
            range_end: end,
            prefix,
            from_key,
            rev,
            limit,
            keys_only,
            count_only,
            print_value_only,
        } => {
            let resp = kv
                .range(pb::RangeRequest {
                    range_end: range_end(&key, end, prefix, from_key),
                    key: key.into_bytes(),
                    revision: rev,
                    limit,
                    keys_only,
                    count_only,
                    ..Default::default()
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if count_only {
                println!("{}", resp.count);
            }
            for item in &resp.kvs {
                print_kv(item, print_value_only);
            }
        }
        KvCommand::Del {
            key,
            range_end: end,
            prefix,
            from_key,
            prev_kv,
        } => {
            let resp = kv
                .delete_range(pb::DeleteRangeRequest {
                    range_end: range_end(&key, end, prefix, from_key),
                    key: key.into_bytes(),
                    prev_kv,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", resp.deleted);
            for item in &resp.prev_kvs {
                print_kv(item, false);
            }
        }
        KvCommand::Watch {
            key,
            range_end: end,
            prefix,
            rev,
            prev_kv,
        } => {
            let end = range_end(&key, end, prefix, false);
            watch(channel, key, end, rev, prev_kv).await?
        }
        KvCommand::Txn => txn(&mut kv).await?,
        KvCommand::Compact { revision, physical } => {
            kv.compact(pb::CompactionRequest { revision, physical })
                .await
                .map_err(status_error)?;
            println!("compacted revision {revision}");
        }
    }
    Ok(())
}

async fn watch(
    channel: Channel,
    key: String,
    range_end: Vec<u8>,
    rev: i64,
    prev_kv: bool,
) -> anyhow::Result<()> {
    let mut client = pb::watch_client::WatchClient::new(channel);
    let create = pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: key.into_bytes(),
                range_end,
                start_revision: rev,
                prev_kv,
                ..Default::default()
            },
        )),
    };
    // Keep the request side open for the life of the watch.
    let requests = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut responses = client
        .watch(requests)
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(resp) = responses.next().await {
        let resp = resp.map_err(status_error)?;
        if resp.canceled {
            if resp.compact_revision != 0 {
                bail!(
                    "watch canceled: revision {} has been compacted (compacted up to {})",
                    rev,
                    resp.compact_revision
                );
            }
            bail!("watch canceled: {}", resp.cancel_reason);
        }
        for ev in resp.events {
            let kind = if ev.r#type == pb::mvccpb::event::EventType::Delete as i32 {
                "DELETE"
            } else {
                "PUT"
            };
            println!("{kind}");
            if let Some(prev) = &ev.prev_kv {
                print_kv(prev, false);
            }
            if let Some(kv) = &ev.kv {
                print_kv(kv, false);
            }
        }
    }
    Ok(())
}

/// Splits a line into words, honouring double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Parses an etcdctl compare, e.g. `mod("key") = "5"` or `value("k") != "v"`.
fn parse_compare(line: &str) -> anyhow::Result<pb::Compare> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let open = line.find('(').context("compare needs target(\"key\")")?;
    let close = line.rfind(')').context("compare needs target(\"key\")")?;
    let target = line[..open].trim();
    let key = line[open + 1..close].trim().trim_matches('"').to_string();
    let rest = words(&line[close + 1..]);
    let [op, operand] = rest.as_slice() else {
        bail!("compare {line:?} needs an operator and a value");
    };
    let result = match op.as_str() {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        ">" => CompareResult::Greater,
        "<" => CompareResult::Less,
        _ => bail!("unknown compare operator {op:?}"),
    };
    let int = || -> anyhow::Result<i64> {
        operand
            .parse()
            .with_context(|| format!("compare value {operand:?} is not a number"))
    };
    let (target, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int()?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int()?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int()?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(operand.clone().into_bytes()),
        ),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(int()?)),
        _ => bail!("unknown compare target {target:?}"),
    };
    Ok(pb::Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes(),
        target_union: Some(union),
        range_end: Vec::new(),
    })
}

fn parse_op(line: &str) -> anyhow::Result<pb::RequestOp> {
    use pb::request_op::Request;
    let w = words(line);
    let request = match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["put", key, value] => Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        }),
        ["get", key, end @ ..] if end.len() <= 1 => Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: end
                .first()
                .map(|e| e.as_bytes().to_vec())
                .unwrap_or_default(),
            ..Default::default()
        }),
        ["del", key, end @ ..] if end.len() <= 1 => {
            Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: end
                    .first()
                    .map(|e| e.as_bytes().to_vec())
                    .unwrap_or_default(),
                ..Default::default()
            })
        }
        _ => bail!("cannot parse txn op {line:?} (put K V | get K [END] | del K [END])"),
    };
    Ok(pb::RequestOp {
        request: Some(request),
    })
}

async fn txn(kv: &mut KvClient<Channel>) -> anyhow::Result<()> {
    let mut sections: Vec<Vec<String>> = vec![Vec::new()];
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading the txn from stdin")?;
        if line.trim().is_empty() {
            if sections.len() == 3 {
                break;
            }
            sections.push(Vec::new());
        } else if let Some(last) = sections.last_mut() {
            last.push(line);
        }
    }
    sections.resize(3, Vec::new());
    let compare = sections[0]
        .iter()
        .map(|l| parse_compare(l))
        .collect::<anyhow::Result<_>>()?;
    let success = sections[1]
        .iter()
        .map(|l| parse_op(l))
        .collect::<anyhow::Result<_>>()?;
    let failure = sections[2]
        .iter()
        .map(|l| parse_op(l))
        .collect::<anyhow::Result<_>>()?;
    let resp = kv
        .txn(pb::TxnRequest {
            compare,
            success,
            failure,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    println!("{}", if resp.succeeded { "SUCCESS" } else { "FAILURE" });
    for op in resp.responses {
        use pb::response_op::Response;
        println!();
        match op.response {
            Some(Response::ResponsePut(_)) => println!("OK"),
            Some(Response::ResponseRange(r)) => {
                for item in &r.kvs {
                    print_kv(item, false);
                }
            }
            Some(Response::ResponseDeleteRange(d)) => println!("{}", d.deleted),
            Some(Response::ResponseTxn(_)) | None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn etcdctl_style_compares_parse_into_targets_and_operands() {
        let c = parse_compare(r#"mod("k1") = "5""#).unwrap();
        assert_eq!(c.key, b"k1");
        assert_eq!(
            c.target_union,
            Some(pb::compare::TargetUnion::ModRevision(5))
        );
        let c = parse_compare(r#"value("k") != "a b""#).unwrap();
        assert_eq!(
            c.target_union,
            Some(pb::compare::TargetUnion::Value(b"a b".to_vec()))
        );
        assert!(parse_compare(r#"mod("k") = "x""#).is_err());
        assert!(parse_compare("nonsense").is_err());
    }
}
