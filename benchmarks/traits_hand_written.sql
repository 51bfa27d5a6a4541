-- The purchase summary and RFM scores as one hand-written DuckDB query: the yardstick for
-- personae's Ibis expressions in bench_traits.py (same definitions, see docs/traits.md).
CREATE OR REPLACE TABLE bench_traits_sql AS
WITH lines AS (
    SELECT customer_id, order_id, ordered_at::DATE AS day, amount, discount, is_return,
           NOT coalesce(is_return, false) AND NOT coalesce(is_non_product, false) AS is_purchase
    FROM orders
    WHERE customer_id IS NOT NULL AND ordered_at::DATE <= DATE 'AS_OF'
),
days AS (
    SELECT customer_id, day, sum(amount) AS value
    FROM lines WHERE is_purchase GROUP BY ALL
),
gaps AS (
    SELECT *, date_diff('day', lag(day) OVER w, day) AS gap,
           row_number() OVER w AS rk,
           row_number() OVER (PARTITION BY customer_id ORDER BY day DESC) AS rk_desc
    FROM days WINDOW w AS (PARTITION BY customer_id ORDER BY day)
),
per_day AS (
    SELECT customer_id, min(day) AS first_purchase, max(day) AS last_purchase,
           count(*) AS purchase_days, sum(value) AS day_value,
           sum(value) FILTER (WHERE rk = 1) AS first_day_value,
           min(day) FILTER (WHERE rk = 2) AS second_purchase,
           max(gap) FILTER (WHERE rk_desc = 1) AS last_interval,
           median(gap) AS interval_median, stddev_samp(gap) AS gap_sd
    FROM gaps GROUP BY ALL
),
per_line AS (
    SELECT customer_id,
           count(DISTINCT order_id) FILTER (WHERE is_purchase) AS orders,
           sum(amount) FILTER (WHERE is_purchase) AS total_value,
           sum(abs(amount)) FILTER (WHERE coalesce(is_return, false)) AS returned,
           sum(discount) FILTER (WHERE is_purchase) AS discount
    FROM lines GROUP BY ALL
),
summary AS (
    SELECT l.customer_id, d.first_purchase, d.last_purchase,
           coalesce(d.purchase_days, 0) AS purchase_days, coalesce(l.orders, 0) AS orders,
           d.purchase_days - 1 AS frequency,
           date_diff('day', d.first_purchase, d.last_purchase)::DOUBLE AS recency,
           date_diff('day', d.first_purchase, DATE 'AS_OF')::DOUBLE AS T,
           CASE WHEN d.purchase_days > 1
                THEN (d.day_value - d.first_day_value) / (d.purchase_days - 1) ELSE 0 END
               AS monetary_value,
           l.total_value, l.total_value / nullif(l.orders, 0) AS avg_order_value,
           coalesce(l.returned, 0) / nullif(l.total_value, 0) AS returns_share,
           l.discount / nullif(l.total_value + coalesce(l.discount, 0), 0) AS discount_share,
           date_diff('day', d.first_purchase, d.last_purchase) / nullif(d.purchase_days - 1, 0)
               AS interval_mean,
           d.interval_median,
           d.gap_sd / (date_diff('day', d.first_purchase, d.last_purchase)
                       / nullif(d.purchase_days - 1, 0)) AS interval_cv,
           d.second_purchase, d.last_interval,
           date_diff('day', d.last_purchase, DATE 'AS_OF') AS days_since_last,
           date_diff('day', d.first_purchase, DATE 'AS_OF') AS tenure_days
    FROM per_line l LEFT JOIN per_day d USING (customer_id)
),
scored AS (
    SELECT customer_id,
           least(5, floor(percent_rank() OVER (ORDER BY days_since_last DESC) * 5) + 1)::BIGINT
               AS r_score,
           least(5, floor(percent_rank() OVER (ORDER BY purchase_days) * 5) + 1)::BIGINT
               AS f_score,
           least(5, floor(percent_rank() OVER (ORDER BY round(total_value, 6)) * 5) + 1)::BIGINT
               AS m_score
    FROM summary WHERE purchase_days > 0
)
SELECT s.*, r.r_score, r.f_score, r.m_score,
       r.r_score::VARCHAR || r.f_score::VARCHAR || r.m_score::VARCHAR AS rfm_cell,
       (r.r_score + r.f_score + r.m_score) / 3.0 AS rfm_score,
       CASE WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^5[4-5]$') THEN 'Champions'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^[3-4][4-5]$') THEN 'Loyal'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^[1-2]5$') THEN 'Cannot Lose Them'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^[1-2][3-4]$') THEN 'At Risk'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^11$') THEN 'Lost'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^[1-2][1-2]$') THEN 'Hibernating'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^3[1-2]$') THEN 'About to Sleep'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^33$') THEN 'Need Attention'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^[4-5][2-3]$') THEN 'Potential Loyalist'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^41$') THEN 'Promising'
            WHEN regexp_matches(r.r_score::VARCHAR || r.f_score::VARCHAR, '^51$') THEN 'New Customers'
       END AS rfm_segment
FROM summary s LEFT JOIN scored r USING (customer_id);
