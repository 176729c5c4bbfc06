//! `index.html`: the whole report on one page. The body is `report.md` rendered by
//! `pulldown-cmark` (its tables, and every plot as an image), followed by the run's CSV
//! tables, each in a `<details>` element that opens without a script. Every link is relative
//! to the `report/` folder, so the run folder can be opened in a browser where it is or
//! after being copied off a cluster.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use pulldown_cmark::{html, Options, Parser};

use super::{Report, ReportOptions, PARTIAL_TABLES};
use crate::run_dir::TABLES;

/// Rows of a CSV table shown on the page; the link opens the whole file.
pub const SHOWN_ROWS: usize = 200;

const STYLE: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em auto;\
max-width:1100px;padding:0 1em;color:#222;line-height:1.4}\
h1{font-size:1.5em;word-break:break-all}h2{border-bottom:1px solid #ccc;margin-top:2em}\
table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.85em}\
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}\
td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto;display:block;\
margin:0.5em 0}details{margin:0.4em 0}summary{cursor:pointer}code{background:#f5f5f5}\
.status{padding:0.6em 1em;background:#fff6d5;border:1px solid #e6cf6e}\
.status.done{background:#e8f5e9;border-color:#9ccc9c}.scroll{overflow-x:auto}";

/// `text` with the characters HTML gives meaning to escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// One CSV table as an HTML table of its first [`SHOWN_ROWS`] rows, inside a `<details>`
/// whose summary links to the file (`href`, relative to the page).
fn csv_table(path: &Path, href: &str) -> Result<String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let header = reader
        .headers()
        .with_context(|| format!("reading {}", path.display()))?
        .clone();
    let mut rows = Vec::new();
    let mut total = 0usize;
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        if total < SHOWN_ROWS {
            rows.push(record);
        }
        total += 1;
    }
    let name = path
        .file_name()
        .map_or_else(String::new, |n| escape(&n.to_string_lossy()));
    let shown = if total > SHOWN_ROWS {
        format!("the first {SHOWN_ROWS} of {total} rows")
    } else {
        format!("{total} rows")
    };
    let mut out = format!(
        "<details><summary><a href=\"{}\"><code>{name}</code></a>: {shown}</summary>\
         <div class=\"scroll\"><table><thead><tr>",
        escape(href)
    );
    for h in header.iter() {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out += "</tr></thead><tbody>";
    for r in &rows {
        out += "<tr>";
        for v in r.iter() {
            let _ = write!(out, "<td>{}</td>", escape(v));
        }
        out += "</tr>";
    }
    out += "</tbody></table></div></details>\n";
    Ok(out)
}

/// The page of a report: `md` rendered, then the CSV tables found in `tables` (the run
/// folder itself, or the report's own collection of an unfinished run).
pub(super) fn page(
    run_dir: &Path,
    tables: &Path,
    report: &Report,
    md: &str,
    options: ReportOptions,
) -> Result<String> {
    let mut body = String::new();
    html::push_html(&mut body, Parser::new_ext(md, Options::ENABLE_TABLES));
    let prefix = if tables == run_dir {
        "../".to_string()
    } else {
        format!("{PARTIAL_TABLES}/")
    };
    let mut data = String::new();
    for name in TABLES {
        let path = tables.join(name);
        if path.is_file() {
            data += &csv_table(&path, &format!("{prefix}{name}"))?;
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let drawn = now.format(&fmt).unwrap_or_default();
    let (class, status) = if report.finished {
        (
            "status done",
            format!(
                "Finished: all {} cells complete and collected. Drawn {drawn} UTC.",
                report.cells
            ),
        )
    } else {
        (
            "status",
            format!(
                "Not finished: {} of {} cells complete; rows of unfinished cells are marked \
                 partial. Drawn {drawn} UTC{}.",
                report.complete,
                report.cells,
                match options.refresh {
                    Some(s) => format!("; this page reloads every {s} s"),
                    None => String::new(),
                }
            ),
        )
    };
    let refresh = match options.refresh {
        Some(s) if !report.finished => format!("<meta http-equiv=\"refresh\" content=\"{s}\">"),
        _ => String::new(),
    };
    let title = escape(&format!("sap report: {}", run_dir.display()));
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{refresh}\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <p class=\"{class}\">{}</p>\n",
        escape(&status)
    );
    page += &body;
    if !data.is_empty() {
        page += "<h2>Tables</h2>\n<p>The run's CSV tables (click a name to open the rows; \
                 the link opens the whole file).</p>\n";
        page += &data;
    }
    page += "</body>\n</html>\n";
    Ok(page)
}
