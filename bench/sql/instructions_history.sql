-- spreadedge bench: one orders page, counted in instructions by bench/instructions.py
-- GET orders?symbol=BTCUSDT&limit=100 as the API runs it: the page in the statement that scopes its
-- transaction to the reader (the API's auth.validate_session does the same, after checking a token).
-- Parameters: %(user_id)s.
select length(trading.order_history_page(symbol => 'BTCUSDT', page_size => 100)::text)
from (select set_config('spreadedge.user_id', %(user_id)s, true)) as scope;
