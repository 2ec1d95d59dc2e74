#!/usr/bin/env python3
"""A ledger sheet of N assets in the import layout (CSV), for the asset benchmarks.

    python3 bench/gen_ledger.py 100000 > ledger.csv
"""
import sys
rows = int(sys.argv[1])
sites = ["政务中心核心机房", "A弱电间机房", "B弱电间机房", "UPS控制间", "LED大屏控制间", "政务服务中心大厅"]
kinds = [("信息发布终端", "XP-55", "西派", "台"), ("核心交换机", "S12708", "华为", "台"),
         ("服务器", "R740", "戴尔", "台"), ("精密空调", "P1040DA13", "艾默生", "台"),
         ("六类跳线", "CAT6-3M", "", "根"), ("叫号机", "QM-100", "齐安", "台")]
print("序号,设备名称,品牌型号,品牌,单位,数量,资产编号,站点,安装日期,状态,IP")
for i in range(1, rows + 1):
    name, model, brand, unit = kinds[i % len(kinds)]
    qty = 1 if unit == "台" else 100
    print(f"{i},{name}{i},{model},{brand},{unit},{qty},ZC-{i:06d},{sites[i % len(sites)]},"
          f"20{18 + i % 6}-{1 + i % 12:02d}-{1 + i % 28:02d},在用,10.{i // 65536}.{i // 256 % 256}.{i % 256}")
