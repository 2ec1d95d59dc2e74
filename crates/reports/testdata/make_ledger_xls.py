# Makes ledger.xls, the legacy-format fixture of src/read.rs tests (python3 with xlwt 1.3.0).
import xlwt, datetime
wb = xlwt.Workbook(encoding="utf-8")
empty = wb.add_sheet("说明")  # an empty first sheet: skipped
ws = wb.add_sheet("设备清单")
heads = ["序号", "设备名称", "品牌型号", "品牌", "单位", "数量", "安装日期", "站点"]
for c, h in enumerate(heads):
    ws.write(0, c, h)
date_style = xlwt.easyxf(num_format_str="yyyy-mm-dd")
rows = [
    [1, "UPS主机", "NX60KVA", "艾默生", "台", 1, datetime.date(2021, 1, 1)],
    [2, "精密空调", "P1040DA13", "艾默生", "台", 2, datetime.date(2022, 6, 30)],
    [3, "核心交换机", "S12708", "华为", "台", 2, None],
]
for r, row in enumerate(rows, start=1):
    for c, v in enumerate(row):
        if v is None:
            continue
        if isinstance(v, datetime.date):
            ws.write(r, c, v, date_style)
        else:
            ws.write(r, c, v)
# 站点 merged over the three data rows.
ws.write_merge(1, 3, 7, 7, "市民服务中心")
wb.save(__file__.replace("make_ledger_xls.py", "ledger.xls"))
