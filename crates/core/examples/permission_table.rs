fn main() {
    print!("{}", yunwei_core::authz::permission_table_markdown());
}
