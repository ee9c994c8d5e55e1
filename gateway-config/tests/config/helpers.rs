use gateway_config::{LoadOptions, Loaded, RouteHit, RouteTable, load_texts_with};
use http::{HeaderMap, Method};

/// These tests load VirtualServices without `gateways`: this gateway also routes for the mesh.
pub fn mesh() -> LoadOptions {
    LoadOptions { mesh: true, ..LoadOptions::default() }
}

pub fn load(text: &str) -> Loaded {
    match load_texts_with([("test.yaml", text)], &mesh()) {
        Ok(l) => l,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The error that refuses `text`, or the one that rejects an object of it (the first).
pub fn load_err(text: &str) -> String {
    match load_texts_with([("test.yaml", text)], &mesh()).and_then(Loaded::strict) {
        Ok(l) => panic!("expected an error, got {:#?}", l.table.routes),
        Err(e) => e.to_string(),
    }
}

pub fn get<'a>(table: &'a RouteTable, path: &str) -> Option<RouteHit<'a>> {
    table.find(&Method::GET, path, &HeaderMap::new(), Some("gateway.local"))
}

/// The route name, primary destination label and endpoint authorities for a GET of `path`.
pub fn route_summary(table: &RouteTable, path: &str) -> Option<(String, String, Vec<String>)> {
    let hit = get(table, path)?;
    let d = table.destination(hit.route.destinations[0].id);
    Some((hit.route.name.clone(), d.label(), d.endpoints.iter().map(|e| e.authority().to_string()).collect()))
}
