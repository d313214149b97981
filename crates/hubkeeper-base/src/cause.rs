//! The innermost cause of an error chain, which is what an admin needs ("Connection
//! refused"); the outer layers of HTTP clients only say "error sending request".

pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
