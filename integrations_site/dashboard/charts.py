"""Charts drawn on the server as inline SVG: no script, no charting library, nothing fetched from anywhere.

Each chart is one ``<figure>``: the SVG (``role="img"``, named by its ``<title>`` and summarised by its
``<desc>``), a caption saying what the numbers are computed from, and the same numbers as a table for
screen readers and for anyone who wants them exact. Series differ by dash pattern as well as colour,
and the legend names them, so colour is never the only cue.
"""
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 12, 30
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    name: str
    values: list  # numbers, or None where there is nothing to show
    colour: str
    dash: str = ""  # an SVG stroke-dasharray; "" is a solid line


def line_chart(*, chart_id: str, title: str, summary: str, caption: str, labels: list[str], series: list[Series],
               unit: str = "", y_max: float | None = None, label_every: int = 1, x_heading: str = "") -> SafeString:
    """Lines over evenly spaced points; a gap where a value is None, a dot on each value."""
    top = y_max or nice_ceiling(max((v for s in series for v in s.values if v is not None), default=0))
    step = PLOT_W / max(len(labels) - 1, 1)
    marks = []
    for line in series:
        points = [(LEFT + i * step, _y(v or 0, top)) for i, v in enumerate(line.values)]
        path, pen_down = [], False
        for (x, y), value in zip(points, line.values, strict=True):
            if value is None:
                pen_down = False
                continue
            path.append(f"{'L' if pen_down else 'M'}{_c(x)},{_c(y)}")
            pen_down = True
        if path:
            marks.append(format_html(
                '<path d="{}" fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}"/>',
                " ".join(path), line.colour, line.dash or "none",
            ))
        marks.extend(
            format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{}: {} {}</title></circle>',
                        _c(x), _c(y), line.colour, labels[i], line.name, _number(value, unit))
            for i, ((x, y), value) in enumerate(zip(points, line.values, strict=True)) if value is not None
        )
    ticks = _x_ticks(labels, lambda i: LEFT + i * step, label_every)
    legend = _legend(series, '<line x1="0" x2="22" y1="5" y2="5" stroke="{}" stroke-width="3" stroke-dasharray="{}"/>')
    return _figure(chart_id, title, summary, caption, top, unit, ticks, marks, legend, labels, series, x_heading)


def stacked_bar_chart(*, chart_id: str, title: str, summary: str, caption: str, labels: list[str],
                      series: list[Series], unit: str = "", x_heading: str = "") -> SafeString:
    """One bar per label, its series stacked bottom-up in the order given."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_ceiling(max(totals, default=0))
    slot = PLOT_W / max(len(labels), 1)
    marks = []
    for i, label in enumerate(labels):
        base = 0
        for part in series:
            value = part.values[i] or 0
            if value:
                y_top, y_base = _y(base + value, top), _y(base, top)
                marks.append(format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" stroke="#fff">'
                    "<title>{}: {} {}</title></rect>",
                    _c(LEFT + i * slot + slot * 0.2), _c(y_top), _c(slot * 0.6), _c(y_base - y_top), part.colour,
                    label, part.name, _number(value, unit),
                ))
            base += value
    ticks = _x_ticks(labels, lambda i: LEFT + i * slot + slot / 2, 1)
    legend = _legend(series, '<rect x="6" y="0" width="10" height="10" fill="{}" data-dash="{}"/>')
    return _figure(chart_id, title, summary, caption, top, unit, ticks, marks, legend, labels, series, x_heading)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value`` (at least 1): a round top for the y axis."""
    if value <= 1:
        return 1
    magnitude = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        if value <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H * (1 - min(value, top) / top)


def _x_ticks(labels, x_of, every) -> list[SafeString]:
    return [
        format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>', _c(x_of(i)), HEIGHT - 10, label)
        for i, label in enumerate(labels) if i % every == 0 or i == len(labels) - 1
    ]


def _legend(series, swatch: str) -> SafeString:
    """Each series' name beside a sample of its mark (the name is what tells them apart)."""
    return format_html_join(
        "", '<li><svg width="22" height="10" aria-hidden="true">' + swatch + "</svg> {}</li>",
        ((s.colour, s.dash or "none", s.name) for s in series),
    )


def _figure(chart_id, title, summary, caption, top, unit, x_ticks, marks, legend, labels, series,
            x_heading) -> SafeString:
    grid = []
    for fraction in (0, 0.5, 1):
        y = _y(top * fraction, top)
        grid.append(format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ccc" stroke-width="1"/>'
            '<text x="{}" y="{}" text-anchor="end">{}</text>',
            LEFT, WIDTH - RIGHT, _c(y), _c(y), LEFT - 6, _c(y + 4), _number(top * fraction, unit),
        ))
    svg = format_html(
        '<svg class="dash-chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-title {}-desc" '
        'preserveAspectRatio="xMidYMid meet" font-size="14" fill="currentColor">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}{}{}</svg>',
        WIDTH, HEIGHT, chart_id, chart_id, chart_id, title, chart_id, summary,
        mark_safe("".join(grid)), mark_safe("".join(marks)), mark_safe("".join(x_ticks)),
    )
    return format_html(
        '<figure class="dash-figure" id="{}"><h3>{}</h3>{}<ul class="dash-legend">{}</ul>'
        '<figcaption>{}</figcaption>{}</figure>',
        chart_id, title, svg, legend, caption, data_table(chart_id, title, labels, series, unit, x_heading),
    )


def data_table(chart_id, title, labels, series, unit, x_heading) -> SafeString:
    """The chart's numbers as a table: the text alternative, one row per point."""
    head = format_html_join("", '<th scope="col">{}</th>', ((s.name,) for s in series))
    body = format_html_join(
        "", '<tr><th scope="row">{}</th>{}</tr>',
        ((label, format_html_join("", "<td>{}</td>", ((_number(s.values[i], unit),) for s in series)))
         for i, label in enumerate(labels)),
    )
    return format_html(
        '<details class="dash-data"><summary>{} as a table</summary><table id="{}-data">'
        '<caption class="visually-hidden">{}</caption><thead><tr><th scope="col">{}</th>{}</tr></thead>'
        "<tbody>{}</tbody></table></details>",
        title, chart_id, title, x_heading, head, body,
    )


def _c(coordinate: float) -> str:
    return f"{coordinate:.1f}"


def _number(value, unit: str = "") -> str:
    if value is None:
        return "no data"
    text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{text} {unit}".strip() if unit and unit != "%" else f"{text}{unit}"
