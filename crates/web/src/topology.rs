//! The topology drawn by the server as SVG (AS5): a layered layout with business systems on top,
//! hosts and cloud servers below them, network and security devices below those, and the
//! environment (UPS, precision air-conditioning) at the bottom. Nodes are labelled rounded
//! rectangles; relations are lines labelled with the relation, the ports at both ends and the
//! cable's label (AS9).
//!
//! The drawing is a pure function of the graph (same graph, same bytes) and contains no script and
//! no style element: every text is XML-escaped, colours are presentation attributes, so the markup
//! may be served inline in a page under the CSP, or alone as `image/svg+xml`.

use std::collections::HashMap;
use std::fmt::Write;

use yunwei_storage::relations::Graph;

use crate::i18n::{Lang, t};

const NODE_W: i64 = 172;
const NODE_H: i64 = 48;
const GAP_X: i64 = 28;
/// Vertical room between rows, where the edge labels go.
const GAP_Y: i64 = 92;
const MARGIN: i64 = 24;
/// Room on the left for the layer captions.
const CAPTION_W: i64 = 96;
const MAX_PER_ROW: usize = 8;
/// Width available for a node's label, in pixels at 13 px.
const LABEL_PX: f64 = (NODE_W - 14) as f64;

/// Layers from top to bottom; a node's layer comes from its kind.
pub const LAYERS: [&str; 4] = ["systems", "hosts", "network", "environment"];

fn layer_of(kind: &str) -> usize {
    match kind {
        "system" => 0,
        "network" | "security" => 2,
        "environment" => 3,
        // host, cloud, storage, software, terminal, other
        _ => 1,
    }
}

fn fill_of(kind: &str) -> (&'static str, &'static str) {
    match layer_of(kind) {
        0 => ("#e8f0fa", "#1f5fae"),
        1 => ("#eef7f0", "#1d7a46"),
        2 => ("#fff4e0", "#8a5a00"),
        _ => ("#f3eefa", "#6a3fa0"),
    }
}

fn edge_style(relation: &str) -> (&'static str, &'static str) {
    match relation {
        "runs_on" => ("#1f5fae", ""),
        "connects_to" => ("#1d7a46", ""),
        "powered_by" => ("#b3261e", " stroke-dasharray=\"2 3\""),
        _ => ("#8a5a00", " stroke-dasharray=\"6 4\""),
    }
}

/// Escapes text for XML content and attribute values; drops characters XML 1.0 cannot carry.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Rough width of text at 13 px: wide (CJK) characters take a full em, others about half.
fn text_px(s: &str) -> f64 {
    s.chars().map(|c| if (c as u32) >= 0x2e80 { 13.0 } else { 7.4 }).sum()
}

/// Cuts `s` to fit `px`, ending with an ellipsis when cut.
fn fit(s: &str, px: f64) -> String {
    if text_px(s) <= px {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = text_px("…");
    for c in s.chars() {
        let w = text_px(c.encode_utf8(&mut [0; 4]));
        if used + w > px {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

fn kind_label(lang: Lang, kind: &str) -> String {
    if kind == "system" {
        return t(lang, "topology.kind_system");
    }
    yunwei_core::ledger::KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, zh, en)| if lang == Lang::En { *en } else { *zh }.to_string())
        .unwrap_or_else(|| kind.to_string())
}

/// Draws the graph. `lang` chooses the words of captions and relation labels; names are as stored.
pub fn render(graph: &Graph, lang: Lang) -> String {
    // Rows of node indexes, layer by layer, in the graph's order within a layer.
    let mut layers: [Vec<usize>; 4] = Default::default();
    for (i, n) in graph.nodes.iter().enumerate() {
        layers[layer_of(&n.kind)].push(i);
    }
    let mut rows: Vec<(usize, Vec<usize>)> = Vec::new();
    for (l, members) in layers.iter().enumerate() {
        for chunk in members.chunks(MAX_PER_ROW) {
            rows.push((l, chunk.to_vec()));
        }
    }
    let widest = rows.iter().map(|(_, r)| r.len() as i64).max().unwrap_or(0).max(1);
    let inner_w = widest * NODE_W + (widest - 1) * GAP_X;
    let width = MARGIN * 2 + CAPTION_W + inner_w;
    let height =
        if rows.is_empty() { MARGIN * 2 + NODE_H } else { MARGIN * 2 + rows.len() as i64 * (NODE_H + GAP_Y) - GAP_Y };

    // Top-left corner of each node.
    let mut pos: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut captions: Vec<(usize, i64)> = Vec::new();
    for (r, (layer, members)) in rows.iter().enumerate() {
        let y = MARGIN + r as i64 * (NODE_H + GAP_Y);
        if captions.last().map(|(l, _)| l) != Some(layer) {
            captions.push((*layer, y));
        }
        let n = members.len() as i64;
        let row_w = n * NODE_W + (n - 1) * GAP_X;
        let x0 = MARGIN + CAPTION_W + (inner_w - row_w) / 2;
        for (k, i) in members.iter().enumerate() {
            pos.insert(graph.nodes[*i].record.as_str(), (x0 + k as i64 * (NODE_W + GAP_X), y));
        }
    }

    let mut svg = String::new();
    let title = t(lang, "topology.title");
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"topology\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\" font-family=\"sans-serif\">",
        xml_escape(&title)
    );
    let _ = write!(svg, "<title>{}</title>", xml_escape(&title));
    let _ = write!(svg, "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>");
    if graph.nodes.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"14\" fill=\"#5b6776\">{}</text>",
            MARGIN,
            MARGIN + NODE_H / 2,
            xml_escape(&t(lang, "topology.empty"))
        );
    }
    for (layer, y) in &captions {
        let _ = write!(
            svg,
            "<text class=\"layer\" x=\"{MARGIN}\" y=\"{}\" font-size=\"12\" fill=\"#5b6776\">{}</text>",
            y + NODE_H / 2 + 4,
            xml_escape(&t(lang, &format!("topology.layer.{}", LAYERS[*layer])))
        );
    }

    // Edges under the nodes. Several relations between the same two nodes fan out.
    let mut seen: HashMap<(&str, &str), i64> = HashMap::new();
    for e in &graph.edges {
        let (Some(&(fx, fy)), Some(&(tx, ty))) = (pos.get(e.from_ref.as_str()), pos.get(e.to_ref.as_str())) else {
            continue;
        };
        let key = if e.from_ref <= e.to_ref {
            (e.from_ref.as_str(), e.to_ref.as_str())
        } else {
            (e.to_ref.as_str(), e.from_ref.as_str())
        };
        let nth = seen.entry(key).or_insert(0);
        let shift = *nth * 8;
        *nth += 1;
        let (x1, y1, x2, y2) = if fy == ty {
            // Same row: side to side.
            if fx < tx {
                (fx + NODE_W, fy + NODE_H / 2 + shift, tx, ty + NODE_H / 2 + shift)
            } else {
                (fx, fy + NODE_H / 2 + shift, tx + NODE_W, ty + NODE_H / 2 + shift)
            }
        } else if fy < ty {
            (fx + NODE_W / 2 + shift, fy + NODE_H, tx + NODE_W / 2 + shift, ty)
        } else {
            (fx + NODE_W / 2 + shift, fy, tx + NODE_W / 2 + shift, ty + NODE_H)
        };
        let (colour, dash) = edge_style(&e.relation);
        let mut text = t(lang, &format!("relation.{}", e.relation));
        if !e.from_port.is_empty() || !e.to_port.is_empty() {
            let _ = write!(text, " {}→{}", e.from_port, e.to_port);
        }
        if !e.cable_label.is_empty() {
            let _ = write!(text, " [{}]", e.cable_label);
        }
        let _ = write!(
            svg,
            "<g class=\"edge\" data-relation=\"{}\" data-id=\"{}\"><title>{} → {}</title>\
             <line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"{colour}\" stroke-width=\"1.5\"{dash}/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{colour}\" stroke=\"#ffffff\" \
             stroke-width=\"3\" paint-order=\"stroke\">{}</text></g>",
            xml_escape(&e.relation),
            e.id,
            xml_escape(&e.from_label),
            xml_escape(&e.to_label),
            (x1 + x2) / 2,
            (y1 + y2) / 2 + 4 + shift,
            xml_escape(&fit(&text, 260.0))
        );
    }

    for n in &graph.nodes {
        let Some(&(x, y)) = pos.get(n.record.as_str()) else { continue };
        let (fill, stroke) = fill_of(&n.kind);
        let _ = write!(
            svg,
            "<g class=\"node\" data-record=\"{rec}\" data-kind=\"{kind}\"><title>{full} ({rec})</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"8\" ry=\"8\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.2\"/>\
             <text x=\"{cx}\" y=\"{ty1}\" font-size=\"13\" text-anchor=\"middle\" fill=\"#1d2733\">{label}</text>\
             <text x=\"{cx}\" y=\"{ty2}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6776\">{sub}</text></g>",
            rec = xml_escape(&n.record),
            kind = xml_escape(&n.kind),
            full = xml_escape(&n.label),
            cx = x + NODE_W / 2,
            ty1 = y + 20,
            ty2 = y + 37,
            label = xml_escape(&fit(&n.label, LABEL_PX)),
            sub = xml_escape(&format!("{} · {}", kind_label(lang, &n.kind), n.record)),
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunwei_storage::relations::{GraphNode, Relation};

    fn node(record: &str, kind: &str, label: &str) -> GraphNode {
        GraphNode { record: record.into(), kind: kind.into(), label: label.into() }
    }

    fn edge(id: i64, from: &str, relation: &str, to: &str) -> Relation {
        Relation {
            id,
            from_ref: from.into(),
            relation: relation.into(),
            to_ref: to.into(),
            from_port: "GE0/0/1".into(),
            to_port: "eth0".into(),
            cable_label: "A-01<&>".into(),
            created_at: 0,
            from_label: String::new(),
            to_label: String::new(),
            from_kind: String::new(),
            to_kind: String::new(),
        }
    }

    fn sample() -> Graph {
        Graph {
            nodes: vec![
                node("system:1", "system", "呼叫受理子系统<script>alert(1)</script>"),
                node("system:2", "system", "R&D \"portal\" 'x'"),
                node("asset:3", "host", "应用服务器一号机应用服务器一号机应用服务器"),
                node("asset:4", "network", "核心交换机"),
                node("asset:5", "environment", "UPS"),
                node("asset:6", "cloud", "云主机"),
            ],
            edges: vec![
                edge(1, "system:1", "runs_on", "asset:3"),
                edge(2, "asset:3", "connects_to", "asset:4"),
                edge(3, "asset:4", "powered_by", "asset:5"),
                edge(4, "asset:3", "backs_up_to", "asset:6"),
                edge(5, "asset:3", "connects_to", "asset:4"),
                // An end outside the drawing is skipped, not drawn to nowhere.
                edge(6, "asset:3", "connects_to", "asset:99"),
            ],
            truncated: false,
        }
    }

    #[test]
    fn well_formed_and_escaped() {
        let svg = render(&sample(), Lang::Zh);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<g class=\"node\"").count(), 6);
        assert_eq!(svg.matches("<g class=\"edge\"").count(), 5);
        assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(!svg.contains("<script"), "markup in names is escaped");
        assert!(svg.contains("&lt;script&gt;"));
        assert!(svg.contains("R&amp;D &quot;portal&quot; &#39;x&#39;"));
        assert!(svg.contains("A-01&lt;&amp;&gt;"), "cable labels are escaped");
        assert!(
            !svg.contains("<style") && !svg.contains("style=") && !svg.contains(" onload="),
            "no styles, no handlers"
        );
        // Every '&' starts an entity.
        for (i, _) in svg.match_indices('&') {
            let rest = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| rest.starts_with(e)),
                "{}",
                &rest[..10.min(rest.len())]
            );
        }
    }

    #[test]
    fn layered_top_to_bottom() {
        let svg = render(&sample(), Lang::En);
        let y_of = |rec: &str| -> i64 {
            let i = svg.find(&format!("data-record=\"{rec}\"")).unwrap();
            let rest = &svg[i..];
            let j = rest.find("<rect x=\"").unwrap();
            let after = &rest[j..];
            let k = after.find(" y=\"").unwrap() + 4;
            after[k..k + after[k..].find('"').unwrap()].parse().unwrap()
        };
        assert!(y_of("system:1") < y_of("asset:3"));
        assert_eq!(y_of("asset:3"), y_of("asset:6"), "cloud servers sit with hosts");
        assert!(y_of("asset:3") < y_of("asset:4"));
        assert!(y_of("asset:4") < y_of("asset:5"));
        assert!(svg.contains("GE0/0/1→eth0"));
    }

    #[test]
    fn deterministic_and_empty() {
        assert_eq!(render(&sample(), Lang::Zh), render(&sample(), Lang::Zh));
        let empty = Graph { nodes: vec![], edges: vec![], truncated: false };
        let svg = render(&empty, Lang::Zh);
        assert_eq!(svg.matches("<g class=\"node\"").count(), 0);
        assert!(svg.ends_with("</svg>"));
    }

    #[test]
    fn long_labels_are_cut() {
        assert_eq!(fit("UPS", 100.0), "UPS");
        let cut = fit("应用服务器一号机应用服务器一号机应用服务器", LABEL_PX);
        assert!(cut.ends_with('…') && text_px(&cut) <= LABEL_PX);
    }

    #[test]
    fn many_nodes_wrap() {
        let nodes: Vec<GraphNode> =
            (1..=22).map(|i| node(&format!("system:{i}"), "system", &format!("子系统{i}"))).collect();
        let svg = render(&Graph { nodes, edges: vec![], truncated: false }, Lang::Zh);
        assert_eq!(svg.matches("<g class=\"node\"").count(), 22);
        let width: i64 = svg.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert_eq!(width, MARGIN * 2 + CAPTION_W + 8 * NODE_W + 7 * GAP_X);
    }
}
