//! The `sqlite3` workload: a generated SQL script that builds and queries an indexed database
//! (inserts in one transaction, three indexes, GROUP BY, a JOIN, UPDATE and DELETE, VACUUM),
//! run by the real `sqlite3` program with `.read` under each allocator (the harness does that;
//! peak RSS is what matters here). [`generate`] also computes the output the queries must
//! print, so a run under any allocator is checked.

use crate::Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// Orders at scale 1 (customers are a tenth of that).
pub const ROWS: usize = 400_000;

/// What a generated script must print.
pub struct Script {
    /// Order rows inserted.
    pub rows: usize,
    /// The exact stdout of `sqlite3 DB ".read SCRIPT"`.
    pub expected: String,
}

/// One order as generated.
struct Order {
    cust: usize,
    amount: i64,
    note: usize,
}

fn text(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| (b'a' + rng.range(0, 25) as u8) as char)
        .collect()
}

/// Writes the script for `rows` orders to `path` and returns what it prints.
pub fn generate(path: &Path, rows: usize) -> io::Result<Script> {
    let customers = (rows / 10).max(1);
    let mut rng = Rng::new(0x5017);
    let mut out = io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        out,
        "PRAGMA journal_mode=MEMORY;\nPRAGMA synchronous=OFF;\nPRAGMA temp_store=MEMORY;"
    )?;
    writeln!(out, "CREATE TABLE customer(id INTEGER PRIMARY KEY, region INTEGER NOT NULL, name TEXT NOT NULL);")?;
    writeln!(out, "CREATE TABLE orders(id INTEGER PRIMARY KEY, cust INTEGER NOT NULL, amount INTEGER NOT NULL, note TEXT NOT NULL);")?;
    writeln!(out, "BEGIN;")?;
    let mut region = Vec::with_capacity(customers + 1);
    region.push(0);
    for id in 1..=customers {
        let r = rng.range(0, 9);
        let len = rng.range(5, 30);
        writeln!(
            out,
            "INSERT INTO customer VALUES({id},{r},'{}');",
            text(&mut rng, len)
        )?;
        region.push(r);
    }
    let mut orders = Vec::with_capacity(rows);
    for id in 1..=rows {
        let o = Order {
            cust: rng.range(1, customers),
            amount: rng.range(1, 10_000) as i64,
            note: rng.range(0, 80),
        };
        let note = text(&mut rng, o.note);
        writeln!(
            out,
            "INSERT INTO orders VALUES({id},{},{},'{note}');",
            o.cust, o.amount
        )?;
        orders.push(o);
    }
    writeln!(out, "COMMIT;")?;
    writeln!(out, "CREATE INDEX orders_cust ON orders(cust);\nCREATE INDEX orders_amount ON orders(amount);\nCREATE INDEX customer_region ON customer(region);")?;
    // `PRAGMA journal_mode` prints the mode it set.
    let mut expected = String::from("memory\n");
    let sum = |v: &[Order], f: &dyn Fn(&Order) -> i64| v.iter().map(f).sum::<i64>();
    // The totals.
    writeln!(out, "SELECT count(*), sum(amount) FROM orders;")?;
    let _ = writeln!(expected, "{}|{}", orders.len(), sum(&orders, &|o| o.amount));
    // A JOIN grouped by the customer's region.
    writeln!(out, "SELECT c.region, count(*), sum(o.amount) FROM orders o JOIN customer c ON c.id = o.cust GROUP BY c.region ORDER BY c.region;")?;
    let mut by_region: BTreeMap<usize, (usize, i64)> = BTreeMap::new();
    for o in &orders {
        let e = by_region.entry(region[o.cust]).or_default();
        *e = (e.0 + 1, e.1 + o.amount);
    }
    for (r, (n, s)) in &by_region {
        let _ = writeln!(expected, "{r}|{n}|{s}");
    }
    // A GROUP BY on an expression.
    writeln!(out, "SELECT amount % 10, count(*), max(length(note)) FROM orders GROUP BY amount % 10 ORDER BY 1;")?;
    let mut by_digit: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for o in &orders {
        let e = by_digit.entry(o.amount % 10).or_default();
        *e = (e.0 + 1, e.1.max(o.note));
    }
    for (d, (n, m)) in &by_digit {
        let _ = writeln!(expected, "{d}|{n}|{m}");
    }
    // UPDATE and DELETE through the indexes, then VACUUM.
    writeln!(out, "UPDATE orders SET amount = amount + 1 WHERE amount % 7 = 0;\nDELETE FROM orders WHERE amount % 5 = 0;\nUPDATE orders SET note = note || 'x' WHERE cust % 3 = 0;\nVACUUM;")?;
    for o in orders.iter_mut() {
        if o.amount % 7 == 0 {
            o.amount += 1;
        }
        if o.cust % 3 == 0 {
            o.note += 1;
        }
    }
    orders.retain(|o| o.amount % 5 != 0);
    writeln!(
        out,
        "SELECT count(*), sum(amount), sum(length(note)) FROM orders;"
    )?;
    if orders.is_empty() {
        expected.push_str("0||\n");
    } else {
        let _ = writeln!(
            expected,
            "{}|{}|{}",
            orders.len(),
            sum(&orders, &|o| o.amount),
            sum(&orders, &|o| o.note as i64)
        );
    }
    writeln!(
        out,
        "SELECT count(*) FROM orders WHERE amount BETWEEN 1000 AND 2000;"
    )?;
    let _ = writeln!(
        expected,
        "{}",
        orders
            .iter()
            .filter(|o| (1000..=2000).contains(&o.amount))
            .count()
    );
    out.flush()?;
    Ok(Script { rows, expected })
}
